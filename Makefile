# Live Collab — the two commands that matter: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PG_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/test
export LC_DATABASE_URL ?= sqlite+aiosqlite:///./live_collab.db

MESSAGE_KEYWORDS := -k msg -k N_ -k problem:3 -k problem_code:3 -k DomainError -k Unauthenticated -k Forbidden \
	-k NotFound -k ValidationFailed -k Conflict -k TooManyRequests -k QuotaExhausted -k WebhookUrlNotAllowed -k Unresolvable \
	-k AccountSuspended -k InvalidCredentials -k WrongPassword -k StoreUnavailable

.PHONY: messages browser clients run test test-sqlite test-postgres install lint migrate seed bench bench-campaigns bench-incentives bench-modules bench-broker stress stress-scale stress-short clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

## Start the service on an embedded SQLite file with demo data: http://127.0.0.1:8000/docs
run: install
	$(PY) -m app migrate
	$(PY) -m app seed-demo
	$(PY) -m app serve --host 127.0.0.1 --port 8000 --no-migrate-first

migrate: install
	$(PY) -m app migrate

seed: install
	$(PY) -m app seed-demo

## Lint (ruff, ruff format, mypy), then every test on SQLite, then on PostgreSQL when it is reachable
## (required with LC_REQUIRE_POSTGRES=1).
test: install lint browser
	$(MAKE) --no-print-directory test-sqlite
	@if $(PY) -c "import asyncio,asyncpg,sys; asyncio.run(asyncpg.connect('$(subst +asyncpg,,$(PG_URL))', timeout=3))" 2>/dev/null; then \
		$(MAKE) --no-print-directory test-postgres; \
	elif [ "$$LC_REQUIRE_POSTGRES" = "1" ]; then \
		echo "PostgreSQL is required (LC_REQUIRE_POSTGRES=1) but not reachable at $(PG_URL)"; exit 1; \
	else \
		echo "PostgreSQL not reachable at $(PG_URL): ran the suite on SQLite only"; \
	fi

# Headless Chromium for the docs-page test and docker-compose to check the compose files (Debian's
# packages; the tests that need them are skipped when they cannot be installed).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
		|| echo "chromium could not be installed: the docs browser test will be skipped"; }
	@command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null 2>&1 \
		|| echo "docker-compose could not be installed: the compose-file check will be skipped"; }

test-sqlite: install
	@echo "== test suite on SQLite =="
	env -u LC_TEST_DATABASE_URL $(PY) -m pytest $(PYTEST_ARGS)

test-postgres: install
	@echo "== test suite on PostgreSQL =="
	LC_TEST_DATABASE_URL=$(PG_URL) $(PY) -m pytest $(PYTEST_ARGS)

## ruff's checks and formatting on all Python code, mypy on the service (settings in pyproject.toml).
lint: install
	$(PY) -m ruff check app tests bench migrations
	$(PY) -m ruff format --check app tests bench migrations
	$(PY) -m mypy app

## Messages: extract the English templates (babel.cfg), merge them into every catalogue
## (app/locale/<lang>/LC_MESSAGES/messages.po, committed; translate the new, empty entries) and
## compile them as a check (the service reads the .po itself at start).
messages: install
	$(VENV)/bin/pybabel extract -F babel.cfg --no-default-keywords $(MESSAGE_KEYWORDS) --sort-output --add-location=file \
		--project live-collab --copyright-holder "Live Collab" -o app/locale/messages.pot .
	@test -f app/locale/zh_CN/LC_MESSAGES/messages.po || \
		$(VENV)/bin/pybabel init -i app/locale/messages.pot -d app/locale -l zh_CN
	$(VENV)/bin/pybabel update -i app/locale/messages.pot -d app/locale --no-fuzzy-matching --ignore-obsolete
	$(VENV)/bin/pybabel compile -d app/locale --statistics

clean:
	rm -rf $(VENV) live_collab.db* .pytest_cache .ruff_cache .mypy_cache clients/openapi.json clients/ts/schema.d.ts clients/python docs/examples/dist

EXAMPLES := docs/examples
$(EXAMPLES)/node_modules/.package-lock.json: $(EXAMPLES)/package.json $(EXAMPLES)/package-lock.json
	cd $(EXAMPLES) && npm ci --no-audit --no-fund

## The clients, generated from the service's OpenAPI document (`python -m app openapi`):
## clients/ts/schema.d.ts (openapi-typescript, used with openapi-fetch; see docs/examples/task_order.ts)
## and clients/python/live_collab_client (openapi-python-client). See docs/clients.md.
clients: install $(EXAMPLES)/node_modules/.package-lock.json
	$(PY) -m app openapi --output clients/openapi.json
	$(EXAMPLES)/node_modules/.bin/openapi-typescript clients/openapi.json --default-non-nullable false -o clients/ts/schema.d.ts
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/openapi-python-client generate --path clients/openapi.json --meta none --overwrite \
		--output-path clients/python/live_collab_client --config clients/openapi-python-client.yml
	cd $(EXAMPLES) && node_modules/.bin/tsc -p . --noEmit
	@echo "clients generated: clients/ts/schema.d.ts, clients/python/live_collab_client; docs/examples type-checks"

## Task-order create+accept under wrk on PostgreSQL: the service against the bare asyncpg reference,
## alternating rounds (see bench/run.py; BENCH_ARGS="--seconds 3 --rounds 1" for a quick run). wrk
## is installed when missing (Debian's package; needs root).
bench: install
	@command -v wrk >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)
	$(PY) bench/run.py $(BENCH_ARGS)

## Campaign stock plan with 10,000 signups on PostgreSQL: the stock-risk view and the CSV/XLSX
## downloads, p50 and peak RSS (see bench/campaign_stock.py; BENCH_ARGS="--signups 500" for a quick run).
bench-campaigns: install
	$(PY) bench/campaign_stock.py $(BENCH_ARGS)

## One month's incentive computation with 10,000 providers, 100,000 merchants and 10,000,000 orders
## on PostgreSQL (see bench/incentives_scale.py; BENCH_ARGS="--scale 0.01" for a quick run).
bench-incentives: install
	$(PY) bench/incentives_scale.py $(BENCH_ARGS)

## One figure per module (campaigns, live bases, outreach, incentives: each one's hottest transition)
## driven by wrk against the bare asyncpg reference, printed as ratios (see bench/modules.py;
## BENCH_ARGS="--seconds 3 --rounds 1" for a quick run). wrk is installed when missing.
bench-modules: install
	@command -v wrk >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)
	$(PY) bench/modules.py $(BENCH_ARGS)

## The broker relay's throughput to the real NATS JetStream and RabbitMQ (see bench/broker.py;
## BENCH_ARGS="--events 2000 --sqlite" for a quick run).
bench-broker: install
	$(PY) bench/broker.py $(BENCH_ARGS)

## Stress and crash safety on PostgreSQL: two processes, 50 random clients for 3 minutes, the test
## clock moving, one process SIGKILLed and restarted; checks the invariants (see bench/stress.py).
stress: install
	$(PY) bench/stress.py --seconds 180 --clients 50 --max-p99 2 --max-drain 10 $(STRESS_ARGS)

## Beyond one machine (scale.md): three service processes relaying to a throw-away NATS JetStream
## (restarted mid-load), on a throw-away primary with a streaming replica for the heavy reads
## (--replicas 3 implies both; `make stress STRESS_ARGS="--replicas 3"` is the same run).
stress-scale: install
	$(PY) bench/stress.py --seconds 180 --clients 50 --replicas 3 --max-p99 2 --max-drain 10 $(STRESS_ARGS)

## The same, short (what CI runs through tests/test_stress.py).
stress-short: install
	$(PY) bench/stress.py --seconds 20 --clients 20 --merchants 6 --creators 20 --agencies 2 \
		--clock-days 10 --kill-at 0.25 --restart-after 3 $(STRESS_ARGS)
