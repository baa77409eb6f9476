#!/usr/bin/env bash
# GPU measurement suite: every figure the GPU issues ask for, in priority order, in one run that
# fits a short device lease. Run from the repository root (it cd's there itself):
#
#     OUT=/path/to/out bash scripts/gpu_suite.sh                          # on the GPU machine
#     GPU_SUITE_DEVICE=cpu GPU_SUITE_SMOKE=1 bash scripts/gpu_suite.sh    # plumbing test on a CPU
#
# Steps (each with its own timeout, its own JSON record as soon as it ends, and a one-line
# summary with its wall time; a failing or slow step never loses the others):
#   0  install .whl/*.whl (scripts/gpu_suite_wheels.sh) into a --target folder (device only)
#   1  environment: nvidia-smi, versions, CPU count, import check (detectron2, fvcore, pycocotools,
#      resnet_backbone.detection ...)
#   2  tools/benchmark.py backbone + detector rows (C4 backbone, whole R-101-C4 detector, one
#      600x1000 image, vs detectron2's builtin), fp32 (2a) and bf16 + channels-last (2b)
#   3  tools/benchmark.py R-50 classifier rows, batch 256, bf16 + channels-last (model only)
#   4  tools/train_cls.py R-50 ImageNet recipe end to end on a synthetic ImageNet-layout JPEG
#      folder (written here by a process pool); steady-state images/s vs step 3's model-only;
#      4b decodes in the DataLoader workers (PIL), 4c on the GPU (DATALOADER.BACKEND gpu: nvJPEG),
#      4d writes the folder into tar shards (resnet-make-shards), 4e reads them (DATASETS.FORMAT
#      shards, webdataset) with 4b's PIL decode
#   5  tools/train_det.py s/iter: our R-101-C4 COCO config vs the same config with detectron2's
#      builtin backbone and Res5ROIHeads, same synthetic COCO data, weights, batch, iterations
#   6  tools/train_cls.py CIFAR-10 ResNet-20, the paper's full schedule (64k iterations), hard
#      timeout, the training set held on the device (DATALOADER.ON_DEVICE True); ResNet-110 too
#      with CIFAR_R110=1
#   7  the combined report (resnet_backbone.benchmark's save_report schema: `python
#      tools/benchmark.py --render $OUT/gpu_suite_report.json` prints it)
#
# $OUT receives two files only: gpu_suite_report.json (rewritten after every step) and
# gpu_suite.log (every step's output, long ones cut in the middle). Data, per-step JSONs and
# full logs go to $GPU_SUITE_WORK (default /tmp/gpu_suite_work, wiped at the start).
#
# Files: scripts/gpu_suite_report.py (data, derived rows, the report), scripts/gpu_suite_wheels.sh.
#
# Settings (environment variables; defaults for the GPU run, smaller ones with GPU_SUITE_SMOKE=1):
#   GPU_SUITE_DEVICE   cuda | cpu                        (cuda)
#   GPU_SUITE_SMOKE    1: tiny sizes everywhere          (0)
#   GPU_SUITE_BUDGET   seconds for the whole suite; every step's timeout is cut to what is left
#                      (minus GPU_SUITE_RESERVE, default 15 s for the report); a step that would
#                      get less than 20 s is skipped and recorded as such      (420)
#   GPU_SUITE_INSTALL  1: step 0 installs .whl/ into GPU_SUITE_SITE (/tmp/site) and puts it and
#                      the checkout first on PYTHONPATH  (1 on cuda, 0 on cpu)
#   GPU_SUITE_PYTHON   interpreter (python3; on cpu .venv/bin/python when it exists)
#   CLS_BATCH CLS_ITERS CLS_SKIP CLS_LOG_PERIOD CLS_CLASSES CLS_WORKERS   step 4 (256 60 20 10 1000 nproc)
#   DET_BATCH DET_ITERS DET_SKIP DET_IMAGES DET_IMAGE_HW DET_WORKERS     step 5 (8 40 10 128 480x640 8)
#   CIFAR_TIMEOUT CIFAR_MAX_ITER CIFAR_R110 CIFAR_TRAIN                  step 6 (200 "" 0 50000)
#
# The device has no package registry: what it lacks travels as wheels in .whl/ (git-ignored;
# made by scripts/gpu_suite_wheels.sh). They are installed with pip --target into a folder that
# goes first on PYTHONPATH, with a sitecustomize.py written there (see write_sitecustomize).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
REPO=$PWD

DEVICE=${GPU_SUITE_DEVICE:-cuda}
SMOKE=${GPU_SUITE_SMOKE:-0}
OUT=${OUT:-./gpu_suite_out}
WORK=${GPU_SUITE_WORK:-/tmp/gpu_suite_work}
BUDGET=${GPU_SUITE_BUDGET:-420}
RESERVE=${GPU_SUITE_RESERVE:-15}
SITE=${GPU_SUITE_SITE:-/tmp/site}
NCPU=$(nproc)
if [ "$DEVICE" = cpu ]; then INSTALL=${GPU_SUITE_INSTALL:-0}; else INSTALL=${GPU_SUITE_INSTALL:-1}; fi
if [ -n "${GPU_SUITE_PYTHON:-}" ]; then PY=$GPU_SUITE_PYTHON
elif [ "$DEVICE" = cpu ] && [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi

if [ "$SMOKE" = 1 ]; then
    BENCH_REPEATS=(--repeats 1 --warmup 0)
    CLS_BENCH_SIZE=(--batch 2 --image-size 64 --repeats 1 --warmup 0)
    CLS_BATCH=${CLS_BATCH:-8}; CLS_ITERS=${CLS_ITERS:-6}; CLS_SKIP=${CLS_SKIP:-2}
    CLS_LOG_PERIOD=${CLS_LOG_PERIOD:-2}; CLS_CLASSES=${CLS_CLASSES:-10}; CLS_WORKERS=${CLS_WORKERS:-$NCPU}
    DET_BATCH=${DET_BATCH:-2}; DET_ITERS=${DET_ITERS:-4}; DET_SKIP=${DET_SKIP:-2}
    DET_IMAGES=${DET_IMAGES:-8}; DET_IMAGE_HW=${DET_IMAGE_HW:-160x224}; DET_WORKERS=${DET_WORKERS:-2}
    # smaller inputs and fewer regions: R-101-C4 training must take seconds per iteration on 2 cores
    DET_SIZE_OPTS=(INPUT.MIN_SIZE_TRAIN "(160,)" INPUT.MAX_SIZE_TRAIN 224 MODEL.RPN.PRE_NMS_TOPK_TRAIN 1000
                   MODEL.RPN.POST_NMS_TOPK_TRAIN 100 MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE 16)
    CIFAR_TIMEOUT=${CIFAR_TIMEOUT:-40}; CIFAR_TRAIN=${CIFAR_TRAIN:-1000}; CIFAR_TEST=${CIFAR_TEST:-200}
    CIFAR_R110=${CIFAR_R110:-0}
    CIFAR_SMOKE_OPTS=(LOG_PERIOD 10 TEST.EVAL_PERIOD 50)
    # CPU only: torchvision's CPU roi_pool refuses bf16 features with fp32 boxes (no CPU autocast
    # rule), so the bf16 detector row cannot run on a CPU; the smoke times the backbone row there
    BF16_ROWS=backbone
    BENCH_TIMEOUT=400; CLS_BENCH_TIMEOUT=200
else
    BENCH_REPEATS=(--repeats 60 --warmup 10)
    CLS_BENCH_SIZE=(--batch 256 --repeats 20 --warmup 5)
    CLS_BATCH=${CLS_BATCH:-256}; CLS_ITERS=${CLS_ITERS:-60}; CLS_SKIP=${CLS_SKIP:-20}
    CLS_LOG_PERIOD=${CLS_LOG_PERIOD:-10}; CLS_CLASSES=${CLS_CLASSES:-1000}; CLS_WORKERS=${CLS_WORKERS:-$NCPU}
    DET_BATCH=${DET_BATCH:-8}; DET_ITERS=${DET_ITERS:-40}; DET_SKIP=${DET_SKIP:-10}
    DET_IMAGES=${DET_IMAGES:-128}; DET_IMAGE_HW=${DET_IMAGE_HW:-480x640}; DET_WORKERS=${DET_WORKERS:-8}
    DET_SIZE_OPTS=()   # the config's own sizes: shorter side 600, longer side at most 1000
    CIFAR_TIMEOUT=${CIFAR_TIMEOUT:-200}; CIFAR_TRAIN=${CIFAR_TRAIN:-50000}; CIFAR_TEST=${CIFAR_TEST:-10000}
    CIFAR_R110=${CIFAR_R110:-0}
    CIFAR_SMOKE_OPTS=()
    BF16_ROWS=backbone,detector
    BENCH_TIMEOUT=180; CLS_BENCH_TIMEOUT=240
fi
CIFAR_MAX_ITER=${CIFAR_MAX_ITER:-}   # empty: the config's 64000 (the paper's schedule)
DET_CFG=configs/detection/faster_rcnn_R_101_C4_coco2017.yaml
DET_CLASSES=5                      # the synthetic shapes' classes (the config's 80 would be idle)

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
REPORT=$OUT/gpu_suite_report.json
LOG=$OUT/gpu_suite.log
rm -rf "$WORK"
mkdir -p "$WORK/steps" "$WORK/logs"
: > "$LOG"
SUITE_START=$(date +%s.%N)
SUITE_DATE=$(date -u "+%Y-%m-%d %H:%M:%S UTC")
SUITE_COMMAND="GPU_SUITE_DEVICE=$DEVICE GPU_SUITE_SMOKE=$SMOKE GPU_SUITE_BUDGET=$BUDGET CIFAR_TIMEOUT=$CIFAR_TIMEOUT CIFAR_R110=$CIFAR_R110 bash scripts/gpu_suite.sh"
SETTINGS=$(printf '{"device":"%s","smoke":%s,"budget_s":%s,"host_cpus":%s,"cls_batch":%s,"cls_iters":%s,"cls_skip":%s,"cls_workers":%s,"cls_classes":%s,"det_batch":%s,"det_iters":%s,"det_skip":%s,"det_images":%s,"det_image_hw":"%s","det_workers":%s,"cifar_timeout_s":%s,"cifar_max_iter":"%s","cifar_r110":%s}' \
    "$DEVICE" "$SMOKE" "$BUDGET" "$NCPU" "$CLS_BATCH" "$CLS_ITERS" "$CLS_SKIP" "$CLS_WORKERS" "$CLS_CLASSES" \
    "$DET_BATCH" "$DET_ITERS" "$DET_SKIP" "$DET_IMAGES" "$DET_IMAGE_HW" "$DET_WORKERS" "$CIFAR_TIMEOUT" \
    "${CIFAR_MAX_ITER:-config}" "$CIFAR_R110")

say() { echo "$*" | tee -a "$LOG"; }
elapsed() { awk -v s="$SUITE_START" -v n="$(date +%s.%N)" 'BEGIN { printf "%d", n - s }'; }
helper() { "$PY" scripts/gpu_suite_report.py "$@"; }

# run_step NAME TITLE TIMEOUT CMD...: run CMD with a timeout cut to the budget, its output in
# $WORK/logs/NAME.log (appended to $LOG, long ones cut in the middle). Sets RC (124/137: timed
# out; -1: skipped, no budget left), WALL (s), STARTED (epoch s), CMDLINE (the exact command),
# LIMIT (the timeout it ran under, s) and STEPLOG.
run_step() {
    local name=$1 title=$2 want=$3; shift 3
    local left=$(( BUDGET - $(elapsed) - RESERVE ))
    local limit=$(( want < left ? want : left ))
    LIMIT=$limit; STEPLOG=$WORK/logs/$name.log
    CMDLINE=$(printf '%q ' "$@"); CMDLINE=${CMDLINE% }
    STARTED=$(date +%s.%N)
    local steplog=$WORK/logs/$name.log
    {
        echo
        echo "================ [$name] $title"
        echo "command: $CMDLINE"
        echo "timeout: ${limit} s (asked ${want} s, budget left ${left} s); started $(date -u '+%H:%M:%S UTC')"
    } >> "$LOG"
    if [ "$limit" -lt 20 ]; then
        RC=-1; WALL=0
        echo "skipped: no budget left" >> "$LOG"
        return
    fi
    timeout -k 10 "$limit" "$@" > "$steplog" 2>&1
    RC=$?
    WALL=$(awk -v s="$STARTED" -v n="$(date +%s.%N)" 'BEGIN { printf "%.1f", n - s }')
    local lines; lines=$(wc -l < "$steplog")
    if [ "$lines" -gt 1600 ]; then
        head -n 300 "$steplog" >> "$LOG"
        echo "... [$((lines - 1300)) lines cut; full log was $steplog on the device] ..." >> "$LOG"
        tail -n 1000 "$steplog" >> "$LOG"
    else
        cat "$steplog" >> "$LOG"
    fi
    echo "---------------- [$name] rc $RC, ${WALL} s" >> "$LOG"
}

# record NAME TITLE KIND [KEY=VALUE...]: the step JSON of the last run_step, then the report.
record() {
    local name=$1 title=$2 kind=$3; shift 3
    local params=()
    for kv in "$@"; do params+=(--param "$kv"); done
    helper step --steps-dir "$WORK/steps" --name "$name" --title "$title" --kind "$kind" \
        --command "$CMDLINE" --rc "$RC" --wall "$WALL" --started "$STARTED" --log "$STEPLOG" "${params[@]}" \
        2>>"$LOG" | tee -a "$LOG" \
        || say "[$name] could not be recorded (rc $RC, ${WALL} s)"
    merge
}
merge() {
    helper merge --steps-dir "$WORK/steps" --out "$REPORT" --command "$SUITE_COMMAND" \
        --date "$SUITE_DATE" --started "$SUITE_START" --settings "$SETTINGS" >>"$LOG" 2>&1 \
        || say "(report merge failed; see $LOG)"
}

# The sitecustomize.py of the --target folder (imported at every interpreter start, the
# DataLoader workers' too, because the folder is first on PYTHONPATH):
# 1. detectron2 v0.6 names PIL.Image.LINEAR in a default argument (detectron2/data/transforms/
#    transform.py, ExtentTransform), evaluated when detectron2.data is imported: Pillow >= 10
#    removed that alias. No pillow<10 wheel exists for CPython 3.12, so the device's Pillow
#    gets it back as PIL.Image.BILINEAR (what LINEAR always was) when it lacks it.
# 2. resnet_backbone.configs is the checkout's configs/ (setup.py installs it there); the
#    checkout runs from PYTHONPATH, not installed, so a finder maps that one name to
#    $GPU_SUITE_REPO/configs (the last finder: an installed package still wins).
write_sitecustomize() {
    cat > "$SITE/sitecustomize.py" <<'PY'
"""Written by scripts/gpu_suite.sh (see the comments there)."""
import importlib.abc
import importlib.util
import os
import sys

try:
    import PIL.Image
    if not hasattr(PIL.Image, "LINEAR"):
        PIL.Image.LINEAR = PIL.Image.BILINEAR
except Exception:
    pass


class _ResnetBackboneConfigs(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        root = os.environ.get("GPU_SUITE_REPO", "")
        init = os.path.join(root, "configs", "__init__.py")
        if fullname != "resnet_backbone.configs" or not os.path.isfile(init):
            return None
        return importlib.util.spec_from_file_location(
            fullname, init, submodule_search_locations=[os.path.dirname(init)])


sys.meta_path.append(_ResnetBackboneConfigs())
PY
}

say "gpu_suite: device $DEVICE, smoke $SMOKE, budget ${BUDGET} s, $NCPU CPUs, python $PY, out $OUT, work $WORK"

# ------------------------------------------------------------------ 0: wheels (device only)
if [ "$INSTALL" = 1 ]; then
    export GPU_SUITE_REPO=$REPO
    run_step 0_install "install .whl/ into $SITE" 120 bash -c \
        "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target '$SITE' .whl/*.whl"
    # detectron2's wheel also ships a top-level "tools" package (its tools/*.py): not wanted
    # first on PYTHONPATH next to this repository's tools/ scripts
    [ "$RC" = 0 ] && write_sitecustomize && rm -rf "$SITE/tools"
    export PYTHONPATH=$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}
    record 0_install "install .whl/ (pip --target $SITE; PYTHONPATH=$SITE:$REPO)" plain
fi

# ---------------------------------------------------------------------- 1: environment
run_step 1_env "environment and imports" 120 "$PY" scripts/gpu_suite_report.py env --out "$WORK/env.json"
record 1_env "environment and imports" env json="$WORK/env.json"

# ------------------------------------------- 2: C4 backbone and R-101-C4 detector rows
run_step 2a_det_rows_fp32 "backbone + detector rows, fp32" "$BENCH_TIMEOUT" \
    "$PY" tools/benchmark.py --device "$DEVICE" --rows backbone,detector "${BENCH_REPEATS[@]}" \
    --json "$WORK/bench_det_fp32.json"
record 2a_det_rows_fp32 "backbone + detector rows, fp32" bench json="$WORK/bench_det_fp32.json" setting=fp32

run_step 2b_det_rows_bf16_cl "backbone + detector rows, bf16 + channels-last" "$BENCH_TIMEOUT" \
    "$PY" tools/benchmark.py --device "$DEVICE" --rows "$BF16_ROWS" "${BENCH_REPEATS[@]}" \
    --dtype bf16 --channels-last on --json "$WORK/bench_det_bf16_cl.json"
record 2b_det_rows_bf16_cl "backbone + detector rows, bf16 + channels-last" bench \
    json="$WORK/bench_det_bf16_cl.json" setting=bf16+CL

# ------------------------------------------------------ 3: R-50 model-only training
run_step 3_cls_model_only "R-50 classifier rows, bf16 + channels-last (model only)" "$CLS_BENCH_TIMEOUT" \
    "$PY" tools/benchmark.py --device "$DEVICE" --rows classifier --depths 50 "${CLS_BENCH_SIZE[@]}" \
    --dtype bf16 --channels-last on --json "$WORK/bench_cls_bf16_cl.json"
record 3_cls_model_only "R-50 classifier rows, bf16 + channels-last (model only)" bench \
    json="$WORK/bench_cls_bf16_cl.json" setting=bf16+CL

# ------------------------------------------- 4: R-50 train_cls end to end, JPEG folder
CLS_IMAGES=$((CLS_ITERS * CLS_BATCH))   # every training image read once: no epoch repeats
run_step 4a_cls_data "ImageNet-layout folder: $CLS_IMAGES train JPEGs 500x375, $CLS_CLASSES val" 180 \
    "$PY" scripts/gpu_suite_report.py imagenet-folder --root "$WORK/imagenet" --train "$CLS_IMAGES" \
    --val "$CLS_CLASSES" --classes "$CLS_CLASSES" --size 500x375 --workers "$NCPU"
record 4a_cls_data "ImageNet-layout JPEG folder" plain
# the R-50 run of 4b and 4c (OUTPUT_DIR and the loader's backend apart)
CLS_R50=("$PY" tools/train_cls.py --config-file configs/classification/imagenet/resnet50.yaml
    DATASETS.ROOT "$WORK/imagenet" MODEL.DEVICE "$DEVICE"
    MODEL.NUM_CLASSES "$CLS_CLASSES" SOLVER.AMP bf16 SOLVER.CHANNELS_LAST True
    SOLVER.IMS_PER_BATCH "$CLS_BATCH" SOLVER.MAX_ITER "$CLS_ITERS" SOLVER.CHECKPOINT_PERIOD "$CLS_ITERS"
    TEST.EVAL_PERIOD "$CLS_ITERS" TEST.FINAL_MODES "['center']" TEST.IMS_PER_BATCH 250
    DATALOADER.NUM_WORKERS "$CLS_WORKERS" LOG_PERIOD "$CLS_LOG_PERIOD" PROGRESS_BAR False
    INPUT.MEAN_IMAGE_MAX_IMAGES 512)
run_step 4b_cls_train "train_cls R-50 ImageNet recipe, JPEG folder, bf16 + channels-last" 240 \
    "${CLS_R50[@]}" OUTPUT_DIR "$WORK/cls_r50"
record 4b_cls_train "train_cls R-50 end to end vs model only" cls metrics="$WORK/cls_r50/metrics.json" \
    batch="$CLS_BATCH" skip="$CLS_SKIP" iters="$CLS_ITERS" workers="$CLS_WORKERS" \
    model_only_step=3_cls_model_only setting=bf16+CL
run_step 4c_cls_train_gpu_decode "train_cls R-50 as 4b, JPEG decode (nvJPEG) and augmentation on the GPU" 240 \
    "${CLS_R50[@]}" OUTPUT_DIR "$WORK/cls_r50_gpu_decode" DATALOADER.BACKEND gpu
record 4c_cls_train_gpu_decode "train_cls R-50 end to end, decode on the GPU, vs model only" cls \
    metrics="$WORK/cls_r50_gpu_decode/metrics.json" batch="$CLS_BATCH" skip="$CLS_SKIP" \
    iters="$CLS_ITERS" workers="$CLS_WORKERS" model_only_step=3_cls_model_only setting=bf16+CL \
    source="ImageNet-layout JPEG folder, decoded on the GPU"
# shards of about CLS_IMAGES / (4 x workers) images: every reader (worker) gets 4 of them
SHARD_SIZE=$(( CLS_IMAGES / (4 * CLS_WORKERS) > 0 ? CLS_IMAGES / (4 * CLS_WORKERS) : 1 ))
run_step 4d_cls_shards "tar shards of the 4a folder, $SHARD_SIZE images each (resnet-make-shards)" 180 \
    "$PY" tools/make_shards.py imagenet "$WORK/imagenet" "$WORK/imagenet_shards" \
    --shard-size "$SHARD_SIZE" --no-progress
record 4d_cls_shards "tar shards of the JPEG folder" plain
run_step 4e_cls_train_shards "train_cls R-50 as 4b, from the tar shards (DATASETS.FORMAT shards)" 240 \
    "${CLS_R50[@]}" OUTPUT_DIR "$WORK/cls_r50_shards" DATASETS.FORMAT shards \
    DATASETS.ROOT "$WORK/imagenet_shards"
record 4e_cls_train_shards "train_cls R-50 end to end from tar shards vs model only" cls \
    metrics="$WORK/cls_r50_shards/metrics.json" batch="$CLS_BATCH" skip="$CLS_SKIP" \
    iters="$CLS_ITERS" workers="$CLS_WORKERS" model_only_step=3_cls_model_only setting=bf16+CL \
    source="tar shards of the JPEG folder (webdataset)"

# --------------------------------------------------- 5: train_det, ours vs builtin
run_step 5a_det_data "synthetic COCO-format set: $DET_IMAGES images ${DET_IMAGE_HW}" 120 \
    "$PY" scripts/gpu_suite_report.py coco --out "$WORK/coco" --images "$DET_IMAGES" \
    --size "$DET_IMAGE_HW" --classes "$DET_CLASSES" --workers "$NCPU"
record 5a_det_data "synthetic COCO-format set" plain
run_step 5b_det_weights "detector weights: seeded init, FrozenBN calibrated on 2 training images" 150 \
    "$PY" scripts/gpu_suite_report.py det-weights --config "$DET_CFG" --coco-json "$WORK/coco/annotations.json" \
    --image-root "$WORK/coco" --images 2 --device "$DEVICE" --out "$WORK/det_weights.pth" \
    MODEL.ROI_HEADS.NUM_CLASSES "$DET_CLASSES" "${DET_SIZE_OPTS[@]}"
record 5b_det_weights "detector weights (FrozenBN calibrated)" plain
mapfile -t BUILTIN_LINES < <(helper det-builtin-opts 2>>"$LOG")
BUILTIN_OPTS=()
for line in "${BUILTIN_LINES[@]}"; do BUILTIN_OPTS+=("${line%%$'\t'*}" "${line#*$'\t'}"); done
say "builtin twin overrides (as tools/benchmark.py's detector row): ${BUILTIN_OPTS[*]:-NONE (det-builtin-opts failed)}"
DET_COMMON=(--config-file "$DET_CFG" --dataset suite_shapes "$WORK/coco/annotations.json" "$WORK/coco"
    MODEL.WEIGHTS "$WORK/det_weights.pth" MODEL.DEVICE "$DEVICE" MODEL.ROI_HEADS.NUM_CLASSES "$DET_CLASSES"
    DATASETS.TRAIN "('suite_shapes',)" DATASETS.TEST "()" SOLVER.IMS_PER_BATCH "$DET_BATCH"
    SOLVER.MAX_ITER "$DET_ITERS" SOLVER.CHECKPOINT_PERIOD 1000000 DATALOADER.NUM_WORKERS "$DET_WORKERS"
    LOG_PERIOD 1 SEED 0 "${DET_SIZE_OPTS[@]}")
run_step 5c_det_train_ours "train_det ours (build_paper_resnet + PaperRes5ROIHeads)" 240 \
    "$PY" scripts/gpu_suite_report.py train-det -- "${DET_COMMON[@]}" OUTPUT_DIR "$WORK/det_ours"
RC_OURS=$RC; CMD_OURS=$CMDLINE; WALL_OURS=$WALL; START_OURS=$STARTED
if [ "${#BUILTIN_OPTS[@]}" -gt 0 ]; then
    run_step 5d_det_train_builtin "train_det detectron2 builtin (build_resnet_backbone + Res5ROIHeads)" 240 \
        "$PY" scripts/gpu_suite_report.py train-det -- "${DET_COMMON[@]}" "${BUILTIN_OPTS[@]}" \
        OUTPUT_DIR "$WORK/det_builtin"
else
    RC=-1; WALL=0; CMDLINE="(not run: no builtin overrides)"; STARTED=$(date +%s.%N)
fi
RC_BUILTIN=$RC
CMDLINE="ours: $CMD_OURS ;; builtin: $CMDLINE"
WALL=$(awk -v a="$WALL_OURS" -v b="$WALL" 'BEGIN { printf "%.1f", a + b }'); STARTED=$START_OURS
RC=$(( RC_OURS != 0 ? RC_OURS : RC_BUILTIN ))
record 5_det_train "train_det s/iter, ours vs detectron2 builtin R-101-C4" det ours="$WORK/det_ours" \
    builtin="$WORK/det_builtin" skip="$DET_SKIP" iters="$DET_ITERS" batch="$DET_BATCH" \
    rc_ours="$RC_OURS" rc_builtin="$RC_BUILTIN" setting=fp32 \
    image_size="${DET_IMAGE_HW} -> $( [ ${#DET_SIZE_OPTS[@]} -gt 0 ] && echo "${DET_SIZE_OPTS[1]}/${DET_SIZE_OPTS[3]}" || echo "600/1000 (config)")"

# ------------------------------------------------ 6: CIFAR-10 full schedule, timeout
run_step 6a_cifar_data "synthetic CIFAR-10 python batches ($CIFAR_TRAIN/$CIFAR_TEST)" 120 \
    "$PY" scripts/gpu_suite_report.py cifar --out "$WORK/cifar" --train "$CIFAR_TRAIN" --test "$CIFAR_TEST"
record 6a_cifar_data "synthetic CIFAR-10 python batches" plain
CIFAR_NETS=(resnet20)
[ "$CIFAR_R110" = 1 ] && CIFAR_NETS+=(resnet110)
for net in "${CIFAR_NETS[@]}"; do
    cfgfile=configs/classification/cifar10/$net.yaml
    read -r target log_period < <("$PY" -c "from resnet_backbone.classification.config import load_cls_cfg as f
c = f('$cfgfile', ['DATASETS.ROOT', 'x', *'${CIFAR_SMOKE_OPTS[*]}'.split()])
print(c.SOLVER.MAX_ITER, c.LOG_PERIOD)" 2>>"$LOG" || echo "64000 100")
    target=${CIFAR_MAX_ITER:-$target}
    extra=()
    [ -n "$CIFAR_MAX_ITER" ] && extra=(SOLVER.MAX_ITER "$CIFAR_MAX_ITER")
    run_step "6_cifar_$net" "CIFAR-10 $net, full schedule ($target iterations, batch 128)" "$CIFAR_TIMEOUT" \
        "$PY" tools/train_cls.py --config-file "$cfgfile" DATASETS.ROOT "$WORK/cifar" \
        OUTPUT_DIR "$WORK/cifar_$net" MODEL.DEVICE "$DEVICE" PROGRESS_BAR False DATALOADER.ON_DEVICE True \
        "${extra[@]}" "${CIFAR_SMOKE_OPTS[@]}"
    record "6_cifar_$net" "CIFAR-10 $net schedule wall time" cifar metrics="$WORK/cifar_$net/metrics.json" \
        target_iters="$target" timeout="$LIMIT" model="ours CIFAR ResNet-${net#resnet}" \
        batch=128 start_time="$STARTED" log_period="$log_period" setting=fp32
done

# ------------------------------------------------------------------ 7: the report
merge
say ""
say "================ summary ($(elapsed) s in all; report $REPORT, log $LOG)"
cat "$WORK/steps/summary.txt" | tee -a "$LOG"
{ echo; echo "================ rendered report"; "$PY" tools/benchmark.py --render "$REPORT"; } >> "$LOG" 2>&1 \
    || say "(render failed; see $LOG)"
ls -la "$OUT" | tee -a "$LOG"
