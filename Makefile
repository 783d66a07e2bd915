.PHONY: setup test
setup:
	bash scripts/setup_env.sh
test: setup
	.venv/bin/python -m ruff check . && .venv/bin/python -m pytest -q
