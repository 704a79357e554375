# Two commands a newcomer needs: `make run` and `make test`.
# With no environment: SQLite + in-memory channel layer. DATABASE_URL / REDIS_URL
# switch to PostgreSQL / channels-redis. PORT changes the port (default 8000).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck pytest migrate demo bench bench-quick clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python requirements/base.txt requirements/local.txt requirements/production.txt
	$(BIN)/pip install --quiet -r requirements/local.txt
	touch $(STAMP)

migrate: $(STAMP)
	$(BIN)/python manage.py migrate --noinput

demo: migrate
	$(BIN)/python manage.py seed_demo

run: demo
	@echo "Serving on http://127.0.0.1:$(PORT)/  (log in as alice / chatchat123)"
	$(BIN)/daphne -b 127.0.0.1 -p $(PORT) config.asgi:application

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy .

pytest: $(STAMP)
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python bench/run.py

bench-quick: $(STAMP)
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) db.sqlite3 test-db*.sqlite3 .mypy_cache .ruff_cache .pytest_cache
