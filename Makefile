# Steward: `make up` runs the stack here, `make test` runs the whole suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install lock lock-deploy up down logs test test-serial compose-test wheelhouse images bench bench-gateway bench-notify bench-ingest bench-install bench-update bench-agent bench-console bench-faults bench-fleet bench-fleet-ramp demo migrate clean

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.lock
	$(PIP) install -q --no-deps -e .
	touch $@

# The web console's modules (htm's Preact bundle, uPlot), exactly as package-lock.json pins them.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed node_modules/.installed

# The tools that check k8s/ (kubernetes-validate, checkov) in a venv of their own: checkov's pins
# conflict with the main environment's.
DEPLOY_VENV ?= .venv-deploy
$(DEPLOY_VENV)/.installed: requirements-deploy.lock
	test -x $(DEPLOY_VENV)/bin/python || python3 -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install -q -r requirements-deploy.lock
	touch $@

# Re-pin the dependency trees after changing requirements.in or requirements-deploy.in.
lock-deploy:
	python3 -m venv /tmp/steward-lock-deploy && /tmp/steward-lock-deploy/bin/pip install -q -r requirements-deploy.in && \
	(echo '# Pinned tree of requirements-deploy.in (make lock-deploy).'; /tmp/steward-lock-deploy/bin/pip freeze) > requirements-deploy.lock

lock:
	python3 -m venv /tmp/steward-lock && /tmp/steward-lock/bin/pip install -q -r requirements.in && \
	/tmp/steward-lock/bin/pip freeze --exclude-editable | grep -v '^steward' > requirements.lock

up: install
	$(PY) -m scripts.stack up

down:
	$(PY) -m scripts.stack down

logs:
	$(PY) -m scripts.stack logs

migrate: install
	$(PY) -m shared.migrations

# The suite in three pytest processes side by side (whole stacks, lab hosts, the rest), each with a database,
# vhost and temporary folder of its own: most of it waits, and the waits overlap (scripts/test_tiers.py).
# `make test-serial` runs everything in one process.
test: install $(DEPLOY_VENV)/.installed
	$(VENV)/bin/ruff check .
	$(PY) -m scripts.test_tiers --durations=15

test-serial: install $(DEPLOY_VENV)/.installed
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

# The docker-compose stack with real containers (needs root: this machine's Docker engine).
compose-test: install
	$(PY) -m pytest -q tests/compose

# Wheels of every pinned dependency, for the control-plane image (built with no index inside);
# setuptools builds the project itself there (its services register as entry points): 70.1+
# builds wheels without the wheel package, and before 80 pkg_resources (nameko) stays quiet.
WHEELHOUSE_SETUPTOOLS = setuptools==75.8.0
.wheelhouse/.built: requirements.lock Makefile
	$(PIP) wheel -q -r requirements.lock $(WHEELHOUSE_SETUPTOOLS) -w .wheelhouse
	touch $@

wheelhouse: install .wheelhouse/.built

# The control-plane image on the official Python base; `make images BASE_IMAGE=...` for another.
BASE_IMAGE ?= python:3.11-slim-bookworm
images: wheelhouse
	docker build --build-arg BASE_IMAGE=$(BASE_IMAGE) -t steward/control-plane:0.1.0 .

bench: bench-gateway bench-ingest bench-notify bench-agent bench-install bench-update

bench-gateway: install
	$(PY) -m bench.gateway

bench-notify: install
	$(PY) -m bench.notify

bench-backup: install
	$(PY) -m bench.backup

bench-ingest: install
	$(PY) -m bench.ingest

# Push-install 20 lab hosts at once and one alone, and the same 20 with Ansible (needs root: network namespaces).
bench-install: install
	$(PY) -m bench.install

# One lab host installed as a user would: the CLI's progress bar, the list, a DNS answer, a lease.
demo: install
	$(PY) -m bench.install --demo

# One push update, one rollback and a 6-host rollout on lab hosts, timed (needs root: network namespaces).
bench-update: install
	$(PY) -m bench.update

# DNS counting exactness from 2,000 to ~33,000 queries/s (real knotd and agent), push backlog drain.
bench-agent: install
	$(PY) -m bench.agent

# The web console with 10,000 servers in headless chromium: first page on screen, heartbeat to the bar (p95).
bench-console: install
	$(PY) -m bench.console

# Faults injected into a stack of its own during mixed traffic: kill -9 of every process, broker connections closed,
# database backends terminated, the whole stack stopped, a control-plane outage; lost/duplicated/late/false alarms.
bench-faults: install
	$(PY) -m bench.faults $(ROUNDS)

# N simulated agents (heartbeats over HTTP, statistics over AMQP) against the whole stack while operators list and open
# details; 1 % go silent, 1 % misbehave. Per 30 s window and overall: rates, lag, list, down detection, CPU, memory.
# The fleet was running before (warm); COLD=1: its first contact, no server heard before.
N ?= 10000
bench-fleet: install
	$(PY) -m bench.fleet -n $(N) $(if $(COLD),--cold)

# The same at N = 10,000, 30,000, 100,000 (and on while it holds): the table and the capacity model's inputs.
bench-fleet-ramp: install
	$(PY) -m bench.fleet --ramp $(if $(COLD),--cold)

clean: down
	rm -rf $(VENV) .steward
