# Two commands a newcomer needs: `make run` and `make test`.
# With no environment: SQLite + in-memory channel layer. DATABASE_URL / REDIS_URL
# switch to PostgreSQL / channels-redis. PORT changes the port (default 8000).
# ASGI_SERVER=daphne serves with daphne instead of uvicorn.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
# ASGI server for `make run`: uvicorn (uvloop, httptools; options in config/serve.py,
# chosen by measurement, see docs/performance.md) or daphne (`make run ASGI_SERVER=daphne`).
ASGI_SERVER ?= uvicorn
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck pytest fuzz migrate demo bench bench-quick clean

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
	@echo "Serving on http://127.0.0.1:$(PORT)/ with $(ASGI_SERVER)  (log in as alice / chatchat123)"
ifeq ($(ASGI_SERVER),daphne)
	$(BIN)/daphne -b 127.0.0.1 -p $(PORT) config.asgi:application
else
	$(BIN)/python -m config.serve --host 127.0.0.1 --port $(PORT)
endif

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy .

pytest: $(STAMP)
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest

test: lint typecheck pytest

# Both fuzzers (tests/fuzz: websocket frames against the consumer, the REST API against its
# OpenAPI schema) with FUZZ_EXAMPLES examples each; `make test` runs them with 300. The counts
# are printed at the end. FUZZ_RANDOM=1 explores new examples instead of the same ones.
FUZZ_EXAMPLES ?= 3000
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest tests/fuzz -q --timeout=0

bench: $(STAMP)
	$(BIN)/python bench/run.py

bench-quick: $(STAMP)
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) db.sqlite3 test-db*.sqlite3 .mypy_cache .ruff_cache .pytest_cache
