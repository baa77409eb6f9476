"""Units of the classification trainer: sampler, lr schedule and warm-up, augmentation, test views
(checked against direct computations), Fig. 7 responses, checkpoint selection, the recipes."""
import math

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from resnet_backbone import build_resnet, create_model
from resnet_backbone.checkpoint import CheckpointError, SafeCheckpointer, save_checkpoint_atomic
from resnet_backbone.classification.config import get_cls_cfg
from resnet_backbone.classification.evaluate import evaluate
from resnet_backbone.classification.sampler import TrainBatchSampler
from resnet_backbone.classification.schedule import (WarmUpUntilTrainError, build_lr_scheduler,
                                                     step_per_evaluation, step_per_iteration)
from resnet_backbone.data.datasets import CorruptImageError, ImageFolderDataset
from resnet_backbone.data.synthetic import make_synthetic, write_image_folder
from resnet_backbone.classification.responses import layer_response_stds, three_by_three_layers
from resnet_backbone.classification.transforms import (CifarTrainTransform, DeviceNormalizer,
                                                       FastImageNetTrainTransform, ImageNetTrainTransform,
                                                       Normalizer, TestViews)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny ImageNet-layout tree of JPEGs of different sizes (2 classes)."""
    root = tmp_path_factory.mktemp("imagenet")
    write_image_folder(root, "val", make_synthetic(3, num_classes=2, seed=3), size=(56, 44))
    write_image_folder(root, "val", make_synthetic(2, num_classes=2, seed=4), size=(40, 64), first_index=3)
    return root


def test_sampler_order_is_a_function_of_seed_and_epoch_and_shards_the_global_batch():
    full = list(TrainBatchSampler(50, 8, seed=1, start_iter=0, max_iter=14))
    assert len(full) == 14  # 6 batches per epoch: iterations 6..11 are epoch 1
    assert sorted(i for b in full[:6] for i, _ in b) != list(range(48))  # shuffled
    assert len({i for b in full[:6] for i, _ in b}) == 48  # no repeats within an epoch
    assert [i for i, _ in full[0]] != [i for i, _ in full[6]]  # new order each epoch
    resumed = list(TrainBatchSampler(50, 8, seed=1, start_iter=9, max_iter=14))
    assert resumed == full[9:]
    shards = [list(TrainBatchSampler(50, 8, seed=1, start_iter=0, max_iter=14, rank=r, world_size=2))
              for r in range(2)]
    assert [a + b for a, b in zip(*shards)] == full
    assert list(TrainBatchSampler(50, 8, seed=2, start_iter=0, max_iter=1)) != full[:1]


def _optimizer():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)


def test_step_schedule_and_resnet110_warmup():
    s = get_cls_cfg().SOLVER
    s.merge_from_list(["STEPS", (5, 8), "WARMUP_LR", 0.01, "WARMUP_WINDOW", 3])
    opt = _optimizer()
    scheduler, warmup = build_lr_scheduler(opt, s), WarmUpUntilTrainError.from_solver(s)
    used = []
    for it, train_err in enumerate([0.9, 0.85, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]):
        with warmup.lr_for_step(opt) as lr:
            opt.step()
            used.append(lr)
        step_per_iteration(scheduler)
        message = warmup.after_iteration(it, train_err)
        assert (message is not None) == (it == 2)  # mean of the last 3: 0.75 < 0.8
    assert used[:3] == [0.01] * 3 and used[3:5] == [0.1, 0.1]  # back to the schedule's lr
    assert [round(lr, 6) for lr in used[5:]] == [0.01, 0.01, 0.01, 0.001]  # /10 at 5 and at 8
    resumed_opt = _optimizer()
    resumed = build_lr_scheduler(resumed_opt, s)
    resumed_opt.load_state_dict(opt.state_dict())
    resumed.load_state_dict(scheduler.state_dict())
    resumed_opt.step(), opt.step()
    step_per_iteration(resumed), step_per_iteration(scheduler)
    assert resumed_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    again = WarmUpUntilTrainError.from_solver(s)
    again.load_state_dict(warmup.state_dict())
    assert not again.active


def test_plateau_schedule_divides_lr_when_val_error_stalls():
    s = get_cls_cfg().SOLVER
    s.merge_from_list(["LR_SCHEDULER", "plateau", "PLATEAU_PATIENCE", 2])
    opt = _optimizer()
    scheduler = build_lr_scheduler(opt, s)
    messages = [step_per_evaluation(scheduler, err) for err in (50.0, 40.0, 39.99, 40.5)]
    # 39.99 is not an improvement of more than 0.1 points; two such evaluations divide the lr
    assert messages[:3] == [None, None, None] and "lr divided by 10" in messages[3]
    assert math.isclose(opt.param_groups[0]["lr"], 0.01) and scheduler.best == 40.0
    step_per_iteration(scheduler)  # iterations do not move a plateau schedule
    assert math.isclose(opt.param_groups[0]["lr"], 0.01)


def test_imagenet_train_transform_is_reproducible_and_in_range():
    img = Image.fromarray(make_synthetic(1, image_size=64).images[0].permute(1, 2, 0).numpy()).resize((90, 60))
    norm = Normalizer(torch.zeros(3, 1, 1), [1, 1, 1])
    t = ImageNetTrainTransform(norm, scale=(40, 56), crop=32, pca_std=0.1)
    a = t(img, torch.Generator().manual_seed(7))
    assert a.shape == (3, 32, 32) and torch.equal(a, t(img, torch.Generator().manual_seed(7)))
    assert not torch.equal(a, t(img, torch.Generator().manual_seed(8)))
    plain = ImageNetTrainTransform(norm, scale=(40, 56), crop=32, pca_std=0.0)
    diff = a - plain(img, torch.Generator().manual_seed(7))  # PCA lighting: one shift per channel
    assert torch.allclose(diff, diff[:, :1, :1].expand_as(diff), atol=1e-4) and diff.abs().max() > 0


def jpeg_file(tmp_path, width: int, height: int):
    """A textured RGB JPEG (quality 90) of the given size."""
    rng = np.random.default_rng(0)
    base = make_synthetic(1, image_size=64).images[0].permute(1, 2, 0).numpy()
    pixels = np.asarray(Image.fromarray(base).resize((width, height), Image.BICUBIC), np.int16)
    pixels = (pixels + rng.integers(-20, 20, pixels.shape)).clip(0, 255).astype(np.uint8)
    path = tmp_path / f"{width}x{height}.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    return path


def test_fast_imagenet_transform_gives_the_papers_crops_flips_and_colours(tmp_path):
    """Crop-before-resize with uint8 output, lighting and mean on the device: for the same
    per-sample seed, the same crop box, flip and colour shift as the step-by-step definition,
    so the images agree up to the uint8 rounding of the resized pixels."""
    path = jpeg_file(tmp_path, 500, 375)
    mean = torch.rand(3, 224, 224) * 255  # a per-pixel mean image, as the paper subtracts
    norm = Normalizer(mean, [1, 1, 1])
    reference, fast = ImageNetTrainTransform(norm), FastImageNetTrainTransform()
    finish = DeviceNormalizer(norm, "cpu")
    flips = set()
    for seed in range(12):
        expected = reference(Image.open(path).convert("RGB"), torch.Generator().manual_seed(seed))
        pixels, shift = fast(Image.open(path), torch.Generator().manual_seed(seed))
        assert pixels.dtype == torch.uint8 and pixels.shape == (3, 224, 224)
        got = finish(pixels[None], shift[None])[0]
        diff = (got - expected).abs()
        # measured: mean 0.007 to 0.09, max 1.0 (bounds 0.25 and 1.5, uint8 rounding)
        assert diff.mean() < 0.25 and diff.max() <= 1.5, (seed, diff.mean(), diff.max())
        flips.add(FastImageNetTrainTransform().plan(500, 375, torch.Generator().manual_seed(seed)).flip)
    assert flips == {False, True}


def test_fast_imagenet_transform_decodes_large_jpegs_at_reduced_size(tmp_path):
    """A 1600x1200 JPEG whose crop shrinks 4x or more (shorter side 256..300) is decoded at 1/4
    scale (PIL draft): the same box of the same scene, so the result stays close to the
    definition's."""
    path = jpeg_file(tmp_path, 1600, 1200)
    norm = Normalizer(torch.zeros(3, 1, 1), [1, 1, 1])
    reference = ImageNetTrainTransform(norm, scale=(256, 300), pca_std=0.0)
    fast = FastImageNetTrainTransform(scale=(256, 300), pca_std=0.0)
    opened = Image.open(path)
    pixels, _ = fast(opened, torch.Generator().manual_seed(0))
    assert opened.size == (400, 300)  # decoded at a quarter of the size
    expected = reference(Image.open(path).convert("RGB"), torch.Generator().manual_seed(0))
    diff = (pixels.float() - expected).abs().mean()
    assert diff < 4, diff  # measured: mean |difference| 0.9 to 1.4 grey levels, 5 seeds (bound 4)


def test_fast_imagenet_transform_on_tensors_matches_the_plan():
    """uint8 tensors (the synthetic sets) take the same draws; the crop is the plan's box."""
    img = make_synthetic(1, image_size=64).images[0]
    fast = FastImageNetTrainTransform(scale=(80, 96), crop=64, pca_std=0.1)
    pixels, shift = fast(img, torch.Generator().manual_seed(5))
    plan = fast.plan(64, 64, torch.Generator().manual_seed(5))
    assert pixels.shape == (3, 64, 64) and pixels.dtype == torch.uint8
    assert torch.equal(shift, plan.shift) and shift.abs().max() > 0


def test_cifar_transform_is_a_window_of_the_padded_mean_subtracted_image():
    ds = make_synthetic(2)
    mean = ds.images.float().mean(0)
    x = CifarTrainTransform(Normalizer(mean, [1, 1, 1]), pad=4, flip=False)(ds.images[0], torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(ds.images[0].float() - mean, (4, 4, 4, 4))
    windows = [padded[:, i:i + 32, j:j + 32] for i in range(9) for j in range(9)]
    assert any(torch.equal(x, w) for w in windows)


def _direct_scores(model, img, views_fn):
    with torch.no_grad():
        return torch.stack([torch.softmax(model(v[None]), 1)[0] for v in views_fn(img)]).mean(0)


def test_ten_crop_and_multi_scale_match_a_direct_computation(folder):
    torch.manual_seed(0)
    model = create_model("cifar_resnet20", num_classes=2).eval()
    dataset = ImageFolderDataset(str(folder), "val")
    mean = torch.rand(3, 24, 24) * 255
    norm = Normalizer(mean, [1, 1, 1])
    views = TestViews(norm, resize=32, crop=24, scales=[24, 40], flip=True)
    ten = views.ten_crop(dataset[0][0])
    assert ten.shape == (10, 3, 24, 24)
    assert torch.allclose(ten[5] + mean, (ten[1] + mean).flip(-1), atol=1e-4)  # flip of top-right
    for mode in ("center", "ten_crop", "multi_scale"):
        out = evaluate(model, dataset, views, mode, batch_size=2, return_scores=True)
        assert out["count"] == 5 and out["scores"].shape == (5, 2)
        for row, idx in zip(out["scores"], out["indices"]):
            img = TF.pil_to_tensor(dataset[idx][0])
            if mode == "center":
                direct = _direct_scores(model, img, lambda x: [norm(TF.center_crop(TF.resize(x, 32, antialias=True), 24))])
            elif mode == "ten_crop":
                direct = _direct_scores(model, img, lambda x: [norm(v) for v in TF.ten_crop(TF.resize(x, 32, antialias=True), 24)])
            else:
                def ms(x):
                    vs = [norm(TF.resize(x, s, antialias=True)) for s in (24, 40)]
                    return [u for v in vs for u in (v, v.flip(-1))]
                direct = _direct_scores(model, img, ms)
            assert torch.allclose(row, direct, atol=1e-5), mode
        labels = torch.tensor([dataset[i][1] for i in out["indices"]])
        top1 = 100 * (out["scores"].argmax(1) != labels).float().mean().item()
        assert math.isclose(out["top1_err"], top1, abs_tol=1e-6) and out["top5_err"] == 0.0  # 2 classes


def test_corrupt_image_is_named_or_skipped(tmp_path):
    write_image_folder(tmp_path, "val", make_synthetic(4, num_classes=2))
    bad = sorted((tmp_path / "val").rglob("*.JPEG"))[1]
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(CorruptImageError, match=str(bad)):
        ImageFolderDataset(str(tmp_path), "val")[1]
    ds = ImageFolderDataset(str(tmp_path), "val", skip_corrupt=True)
    out = evaluate(create_model("cifar_resnet20", num_classes=2),
                   ds, TestViews(Normalizer(torch.zeros(3, 1, 1), [1, 1, 1])), "center")
    assert out["count"] == 3 and out["skipped"] == 1


def test_response_stds_hook_every_3x3_layer_after_bn():
    torch.manual_seed(0)
    model = build_resnet(8, cifar=True, num_classes=10)
    names = [n for n, _ in three_by_three_layers(model)]
    assert names[0] == "stem.conv1" and len(names) == 7  # 6n + 1 3x3 layers, n = 1
    x = torch.randn(6, 3, 16, 16)
    stds = layer_response_stds(model, x, batch_size=4)
    layer = dict(model.named_modules())["res3.0.conv2"]
    captured = []
    h = layer.norm.register_forward_hook(lambda m, i, o: captured.append(o.clone()))  # the block adds in place
    model.eval()
    with torch.no_grad():
        model(x)
    h.remove()
    direct = captured[0].permute(1, 0, 2, 3).flatten(1).std(1, unbiased=False).mean().item()
    assert math.isclose(dict(stds)["res3.0.conv2"], direct, rel_tol=1e-5)


def test_resume_skips_truncated_checkpoint_and_mismatch_is_listed(tmp_path):
    model = create_model("cifar_resnet20", num_classes=5)
    checkpointer = SafeCheckpointer(model, str(tmp_path))
    checkpointer.save("model_0000003", iteration=3)
    checkpointer.save("model_0000007", iteration=7)  # tagged in last_checkpoint, then torn:
    data = (tmp_path / "model_0000007.pth").read_bytes()
    (tmp_path / "model_0000007.pth").write_bytes(data[: len(data) // 2])
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000007.pth"
    assert checkpointer.has_checkpoint()
    assert checkpointer.get_checkpoint_file() == str(tmp_path / "model_0000003.pth")
    assert checkpointer.resume_or_load("", resume=True)["iteration"] == 3
    sd = create_model("cifar_resnet20", num_classes=10).state_dict()
    save_checkpoint_atomic({"model": sd}, tmp_path / "c10.pth")
    with pytest.raises(CheckpointError, match=r"linear.weight\s*\|\s*5x64\s*\|\s*10x64"):
        checkpointer.load(str(tmp_path / "c10.pth"), checkpointables=[])


def test_every_recipe_config_loads_and_names_its_paper_number():
    from pathlib import Path

    from resnet_backbone.classification.config import check_cls_cfg
    from resnet_backbone.classification.engine import build_model

    root = Path(__file__).resolve().parents[2] / "configs" / "classification"
    files = sorted(p for p in root.rglob("*.yaml") if not p.name.startswith("Base-"))
    assert len(files) == 9 + 11
    for path in files:
        cfg = get_cls_cfg()
        cfg.merge_from_file(str(path))
        check_cls_cfg(cfg)
        header = path.read_text().splitlines()[0]
        assert header.startswith("#") and ("Table" in header or "Fig. 6" in header), path
        if "cifar" in path.parts[-2]:
            assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.STEPS, cfg.SOLVER.MAX_ITER) == (128, (32000, 48000), 64000)
            if "1202" not in path.name:
                build_model(cfg)
        else:
            assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.LR_SCHEDULER, cfg.SOLVER.MAX_ITER) == (256, "plateau", 600000)
            assert cfg.INPUT.TRAIN_SCALE == [256, 480] and cfg.TEST.SCALES == [224, 256, 384, 480, 640]
