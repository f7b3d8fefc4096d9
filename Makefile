# mirrorlab: `make demo` and `make test` are all a new user needs; both run `setup` first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEBIAN_PACKAGES := docker-registry podman skopeo runc containerd iproute2 util-linux gcc libssl-dev nginx gnupg chromium

.PHONY: setup test lint demo bench fuzz clean

setup: $(STAMP)
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "error: missing Debian packages:$$missing (run 'sudo make setup')" >&2; exit 2; \
	  fi; \
	fi

# The Go test oracle (tests/oracle): the real containers/image and runtime-utils, pinned in
# tests/oracle/go.mod, fetched through the Go module proxy and built without C libraries.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
ORACLE := $(BIN)/mirrorlab-oracle
ORACLE_TAGS := containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper
setup: $(ORACLE)
$(ORACLE): tests/oracle/go.mod tests/oracle/go.sum $(wildcard tests/oracle/*.go) | $(STAMP)
	cd tests/oracle && GOFLAGS='-mod=mod -buildvcs=false' GOTOOLCHAIN=local CGO_ENABLED=0 \
	  $(GO) build -trimpath -tags $(ORACLE_TAGS) -o $(abspath $(ORACLE)) .

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

# The suite runs in a private network namespace: only `lo` exists, so no name from a
# test configuration (quay.io, mirror.example.net, ...) can ever reach a real resolver.
test: setup lint
	unshare -n sh -c 'ip link set lo up && exec $(BIN)/pytest $(PYTEST_ARGS)'

lint: $(STAMP)
	$(BIN)/ruff check mirrorlab/*.py proxy harness certs tests
	$(BIN)/mypy

demo: setup
	$(BIN)/mirrorlab demo

bench: setup
	$(BIN)/mirrorlab bench

# Coverage-guided fuzzing of every reader of outside input; crashes land in fuzz/.
FUZZ_SECONDS ?= 60
fuzz: setup
	@mkdir -p fuzz
	for t in $$($(BIN)/python -m tests.fuzz --list); do \
	  MIRRORLAB_FUZZ_WORK=fuzz/work $(BIN)/python -m tests.fuzz $$t fuzz/corpus-$$t -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=fuzz/ || exit 1; \
	done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
