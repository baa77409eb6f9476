# The two commands of the README. Both create .venv/ if it is missing (scripts/setup_env.sh);
# a second run reuses it and starts in seconds.
.PHONY: env test demo clean-env

env:
	@bash scripts/setup_env.sh

test: env
	.venv/bin/python -m pytest $(PYTEST_ARGS)

DEMO_ARGS ?= --overwrite

demo: env
	.venv/bin/python tools/train_det.py $(DEMO_ARGS)

clean-env:
	rm -rf .venv
