# agentic-triage: a memory-bounded AgenticSession operator and the CLI that proves it.
# `make help` lists the targets. Two commands do all the set-up on a fresh machine:
#   make demo   # venv, cluster, operator, a small reproduce that reaches a real OOMKill, report
#   make test   # venv, cluster, the whole test suite (unit + cluster + node)

SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
export TRIAGE_KUBECONFIG ?= $(HOME)/.kube/triage-local.yaml
# kind (with a Docker engine) or the local node built from Debian packages (default here).
CLUSTER ?= $(shell if command -v kind >/dev/null 2>&1 && docker info >/dev/null 2>&1; then echo kind; else echo local; fi)
PYTEST_ARGS ?=

.PHONY: help
help: ## List the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -U pip setuptools wheel
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create the virtualenv with the project and dev tools

.PHONY: deps
deps: ## Install the Debian packages the local node and the tests need (root)
	bash cluster/deps.sh

.PHONY: cluster-up
cluster-up: ## Start the cluster (kind, or the local node) and print its kubeconfig
ifeq ($(CLUSTER),kind)
	kind get clusters | grep -qx triage || kind create cluster --name triage --config kind-config.yaml --kubeconfig $(TRIAGE_KUBECONFIG)
	@echo $(TRIAGE_KUBECONFIG)
else
	bash cluster/up.sh
endif

.PHONY: cluster-down
cluster-down: ## Stop the cluster's processes (by PID) and remove its state
ifeq ($(CLUSTER),kind)
	kind delete cluster --name triage
else
	bash cluster/down.sh
endif

.PHONY: image
image: ## Build the operator image, the test operators and the py-spy sidecar; load them
ifeq ($(CLUSTER),kind)
	docker build -t localhost/agentic-operator:dev .
	docker build -t localhost/ambient-runner:dev -f cluster/images/runner.Dockerfile .
	kind load docker-image localhost/agentic-operator:dev localhost/ambient-runner:dev --name triage
	for t in kopf-sessions client-sessions go-informer; do \
	    docker build -t localhost/triage-$$t:dev -f cluster/images/$$t.Dockerfile . || exit 1; done
	docker build -t localhost/triage-pyspy:dev -f cluster/images/pyspy.Dockerfile .
	kind load docker-image localhost/triage-kopf-sessions:dev localhost/triage-client-sessions:dev \
	    localhost/triage-go-informer:dev localhost/triage-pyspy:dev --name triage
else
	bash cluster/images.sh
	bash cluster/test-operators.sh
endif

.PHONY: deploy
deploy: venv image ## Deploy CRDs, RBAC and the operator Deployment, wait for rollout
	KUBECONFIG=$(TRIAGE_KUBECONFIG) OVERLAY=$(CLUSTER) bash cluster/deploy.sh

.PHONY: demo
demo: venv cluster-up deploy ## End to end: reproduce an OOMKill and render the HTML report
	$(VENV)/bin/triage reproduce --kubeconfig $(TRIAGE_KUBECONFIG) --mem-limit 128Mi \
	    --set-env AGENTIC_CACHE_MODE=full --namespaces 200 --sessions-per-ns 100 \
	    --batch-size 2 --max-batches 60 --profile memray --cleanup --out reports/demo
	$(VENV)/bin/triage report reports/demo

.PHONY: test
test: venv cluster-up ## Run every test (unit, cluster, node) against the real cluster
	$(MAKE) image
	PYTEST_ARGS="$(PYTEST_ARGS)" TRIAGE_KUBECONFIG=$(TRIAGE_KUBECONFIG) bash tests/run-suite.sh

.PHONY: test-unit
test-unit: venv ## Run only the pure unit tests (no cluster)
	$(VENV)/bin/pytest -m unit $(PYTEST_ARGS)

.PHONY: lint
lint: venv ## ruff lint + format check, mypy --strict, import contracts
	$(VENV)/bin/ruff check agentic_operator triage tests bench cluster
	$(VENV)/bin/ruff format --check agentic_operator triage tests bench cluster
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

.PHONY: bench
bench: venv cluster-up ## Run the benchmarks (results in bench/results/*.json)
	$(PY) bench/operator_memory.py
	$(PY) bench/operator_sync.py
	$(PY) bench/load_throughput.py
	$(PY) bench/apiserver_write_cost.py
	$(PY) bench/memray_read.py

.PHONY: scalability
scalability: venv cluster-up deploy ## The CI scalability gate: scenarios at CI size against budgets
	$(VENV)/bin/triage ci --kubeconfig $(TRIAGE_KUBECONFIG)

.PHONY: clean
clean: ## Remove the virtualenv and run outputs (not the cluster)
	rm -rf $(VENV) reports/*/ .mypy_cache .ruff_cache .pytest_cache
