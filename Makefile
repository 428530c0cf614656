# toolfleet: the two commands are `make run` and `make test`; each installs what it needs.
.DEFAULT_GOAL := help
SHELL := /bin/bash

# uv from PATH, else bootstrapped into .tools/ with the machine's python3 and pip.
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --frozen

.PHONY: help sync lock runtime run test lint format bench sandbox-images compose-images redis sql-databases k8s-tools compat-venv mcp-servers toolchains deploy-files

help:
	@echo "make run    serve the gateway with embedded defaults on 127.0.0.1:8000"
	@echo "make test   lint, set up Docker, compose images and Redis, run the whole test suite"
	@echo "make compat-venv  the trainer stacks (verl, trl, skyrl-gym) for tests/compat, CPU torch"
	@echo "make bench  print the gateway and sandbox figures (needs wrk; docker: sandbox-images)"

$(CURDIR)/.tools/bin/uv:
	python3 -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet 'uv>=0.8,<1'

sync: $(UV)
	$(UV) sync --frozen --all-packages

# uv.lock again after a package's dependencies changed (uv from PATH or .tools/).
lock: $(UV)
	$(UV) lock

# The Python environment the model's code runs in (a virtualenv of its own, never the
# service's): /opt/toolfleet/runtime-<hash> as root, else ~/.local/share/toolfleet/. And the
# exec shim the supervisor starts programs with (without a C compiler it forks them instead).
runtime: sync
	UV=$(UV) $(RUN) python -m toolfleet.sandbox.runtime build
	$(RUN) python -m toolfleet.box.shim build || echo "no exec shim (no C compiler?): programs are forked"

run: sync runtime
	$(RUN) toolfleet serve

# mypy --strict on the typed surface (core, the protocol, the client, the kernel's channel;
# [tool.mypy]).
lint: sync
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

format: sync
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

# The compilers and interpreters of run_program and the judge (docs/languages.md), from
# Debian's packages (idempotent; ~2 min on a fresh machine, ~1 s when present).
toolchains:
	bash deploy/toolchains.sh

# The docker backend's tests run for real: a Docker engine (started if needed), gVisor, and
# the sandbox image built locally (idempotent; needs root, as on this project's machines).
sandbox-images:
	bash deploy/docker/install-docker.sh
	bash deploy/docker/build-images.sh

# Every image of docker-compose.yml (the sandbox's included) and Compose v2.
compose-images: sandbox-images
	bash deploy/docker/compose-images.sh

# The distributed tests use a real Redis (127.0.0.1:6379) and redis-server.
redis:
	bash deploy/ensure-redis.sh

# The SQL tests use the real PostgreSQL and MariaDB (127.0.0.1), loaded with test databases.
sql-databases: sync
	UV=$(UV) bash deploy/ensure-databases.sh

# The MCP servers stdio upstreams run (npm's reference servers, PyPI's time and sqlite), in
# /opt/toolfleet/mcp: installed ahead of time, as the jail they run in has no network.
mcp-servers:
	bash deploy/mcp/install-servers.sh

# The per-service parts of docker-compose.yml and deploy/k8s, written from the service list
# (deploy/generate.py; tests/deploy/test_generate.py fails when the checked-in files differ).
deploy-files:
	python3 deploy/generate.py

# kubectl kustomize for the manifests' offline validation (tests/deploy/test_k8s.py)
k8s-tools:
	bash deploy/k8s/install-kubectl.sh >/dev/null

# The trainer stacks (verl, trl, skyrl-gym) the compat tests drive with their own code, in a
# virtualenv of their own made with pip (the only installer that takes this machine's CPU
# torch wheel; the project's uv lock stays free of torch). Rebuilt when its lists change.
COMPAT_VENV := $(CURDIR)/.venv-compat
COMPAT_REQS := tests/compat/stacks/requirements.txt tests/compat/stacks/no-deps.txt
$(COMPAT_VENV)/.installed: $(COMPAT_REQS)
	rm -rf $(COMPAT_VENV)
	python3 -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/pip install --quiet --disable-pip-version-check 'torch==2.13.0'
	$(COMPAT_VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/compat/stacks/requirements.txt
	$(COMPAT_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -r tests/compat/stacks/no-deps.txt
	touch $@

compat-venv: $(COMPAT_VENV)/.installed

# toolchains before runtime: their gcc builds the exec shim
test: lint toolchains runtime compose-images redis sql-databases k8s-tools compat-venv mcp-servers
	$(RUN) pytest

bench: sync
	@command -v wrk >/dev/null || { echo "bench needs wrk: apt-get install -y wrk"; exit 2; }
	$(RUN) python bench/gateway_overhead.py
	$(RUN) python bench/sandbox_local.py
	$(RUN) python bench/sandbox_docker.py
	$(RUN) python bench/distributed.py
	$(RUN) python bench/search.py
	$(RUN) python bench/vision.py
	$(RUN) python bench/sql.py
