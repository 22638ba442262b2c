# Lumnar: `make run` starts the demo, `make test` runs every test. Both install what is missing.
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(CURDIR)/.tools/bin:$(PATH)
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
PORT ?= 5000
export LUMNAR_BASE_URL ?= http://127.0.0.1:$(PORT)
# The app runs as production unless told otherwise; the demo on this machine is development
# (outbox page, demo shop), and its web process listens on this machine only (the Procfile
# alone binds 0.0.0.0, for a PaaS). `make run HOST=0.0.0.0` lets other machines in.
run demo migrate: export LUMNAR_ENV ?= development
HOST := 127.0.0.1

.PHONY: run test bench lint migrate install chromium servers demo clean

install: .venv/.synced static/vendor/.copied

# uv is the only thing we need before Python packages; put it in .tools/ when it is missing.
$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools && .tools/bin/python -m pip install --quiet uv

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --quiet
	@touch $@

# htmx and its SSE extension come from npm (pinned in package.json); we serve their dist files.
static/vendor/.copied: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p static/vendor
	cp node_modules/htmx.org/dist/htmx.min.js node_modules/htmx-ext-sse/dist/sse.min.js static/vendor/
	@touch $@

chromium:
	@if [ -z "$$LUMNAR_CHROMIUM" ] && ! command -v chromium >/dev/null; then \
		echo "installing Chromium for the browser tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi

# The second engine the suite runs on: Debian's PostgreSQL (with contrib: unaccent) and Redis.
# The tests start throwaway servers of their own (tests/servers.py); nothing here runs them.
servers:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v redis-server >/dev/null; then \
		echo "installing PostgreSQL and Redis for the tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq postgresql postgresql-contrib redis-server >/dev/null; \
	fi

migrate: install
	flask --app app migrate

demo: migrate
	flask --app app demo

run: demo
	@echo
	@echo "  Lumnar:          $(LUMNAR_BASE_URL)/"
	@echo "  Dashboard:       $(LUMNAR_BASE_URL)/dashboard"
	@echo "  Demo shop:       $(LUMNAR_BASE_URL)/demo/shop   (the chat widget as visitors see it)"
	@echo "  Outbox (e-mail): $(LUMNAR_BASE_URL)/dev/outbox"
	@echo "  Log in with the demo login printed above. Ctrl+C stops everything."
	@echo
	HOST=$(HOST) PORT=$(PORT) LUMNAR_WORKER_FLAGS=--quiet honcho start -f Procfile web worker

# The whole suite on SQLite, and what is proven on PostgreSQL + Redis (tests/conftest.py
# POSTGRES_READY) against real throwaway servers. The two passes share nothing but the machine
# (each its own temporary folders, free ports and servers), so they run side by side: the
# whole takes about as long as the longer pass. Each pass's output is printed when both end.
test: install chromium servers
	@mkdir -p .test-output
	@echo "running the SQLite pass and the PostgreSQL + Redis pass side by side"
	@pytest -q -p no:cacheprovider --durations=15 > .test-output/sqlite.txt 2>&1 & lite=$$!; \
	pytest -q -p no:cacheprovider --durations=15 --engine=postgres > .test-output/postgres.txt 2>&1; pg=$$?; \
	wait $$lite; sqlite=$$?; \
	echo "== SQLite pass (exit $$sqlite)"; cat .test-output/sqlite.txt; \
	echo "== PostgreSQL + Redis pass (exit $$pg)"; cat .test-output/postgres.txt; \
	test $$sqlite -eq 0 -a $$pg -eq 0

bench: install
	@if ls tests/bench/bench_*.py >/dev/null 2>&1; then \
		for f in tests/bench/bench_*.py; do python $$f || exit 1; done; \
	else echo "no benchmarks yet"; fi

lint: install
	ruff check app jobs tests

clean:
	rm -rf .venv .tools node_modules static/vendor .test-output
