# The two commands of the README. Both create .venv/ if it is missing (scripts/setup_env.sh);
# a second run reuses it and starts in seconds.
.PHONY: env test demo clean-env

env:
	@bash scripts/setup_env.sh

# The suite in 2 pytest-xdist workers (CI's 2 cores; each test then runs on one thread, see
# tests/helpers.py TOOL_THREADS); the tests that share a trained model run in one worker
# (--dist loadgroup, tests/conftest.py). PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2

test: env
	.venv/bin/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

DEMO_ARGS ?= --overwrite

demo: env
	.venv/bin/python tools/train_det.py $(DEMO_ARGS)

clean-env:
	rm -rf .venv
