# Steward: `make up` runs the stack here, `make test` runs the whole suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install lock up down logs test bench bench-gateway bench-notify bench-ingest bench-install bench-update bench-agent demo migrate clean

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.lock
	$(PIP) install -q --no-deps -e .
	touch $@

install: $(VENV)/.installed

# Re-pin the dependency tree after changing requirements.in.
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

test: install
	$(PY) -m pytest -q

bench: bench-gateway bench-ingest bench-notify bench-agent bench-install bench-update

bench-gateway: install
	$(PY) -m bench.gateway

bench-notify: install
	$(PY) -m bench.notify

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

clean: down
	rm -rf $(VENV) .steward
