# goldsmith: everything a fresh Debian 12 machine needs, as root.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= out
APT_PACKAGES := qemu-system-x86 qemu-utils mmdebstrap e2fsprogs fdisk openssh-client openssl \
                chromium ca-certificates apt-utils gnupg dpkg-dev ovmf swtpm swtpm-tools dosfstools \
                docker-registry softhsm2 tinyproxy packer shellcheck

.PHONY: deps apt venv lint test unit e2e demo bench clean

deps: apt venv

# Installs only what is missing, so a second run costs nothing.
apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing" >&2; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >&2; \
	fi

venv: $(BIN)/goldsmith

$(BIN)/goldsmith: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev,ansible]'
	@touch $@

lint: venv
	$(BIN)/ruff check builder hardening validate tests
	$(BIN)/ruff format --check builder hardening validate tests
	$(BIN)/mypy
	@dir=$$(mktemp -d) && trap 'rm -rf "$$dir"' EXIT && \
	  $(BIN)/python -m hardening.render_all "$$dir" examples/webserver/profile.yaml >/dev/null && \
	  echo "shellcheck -s bash: hardening/bash, every profile's apply and check scripts, examples/webserver" && \
	  shellcheck -s bash hardening/bash/*.sh "$$dir"/*.sh examples/webserver/controls/*.sh examples/webserver/files/*.sh

unit: venv
	$(BIN)/pytest -q tests/unit

e2e: deps
	$(BIN)/pytest -q -m vm tests/e2e

test: deps lint
	$(BIN)/pytest -q --durations=30 tests

# Build, validate and sign the default template with a demo key, then verify it
# as a deployment gate would. A second run reuses the artifact (same build key).
demo: deps
	@mkdir -p $(OUT)
	@test -f $(OUT)/demo-key || $(BIN)/goldsmith keygen $(OUT)/demo-key
	@art=$$($(BIN)/goldsmith release templates/debian-12-baseline.yaml --key $(OUT)/demo-key \
	        --out $(OUT) --json | $(BIN)/python -c 'import json,sys; print(json.load(sys.stdin)[0]["result"]["artifact"])') && \
	  $(BIN)/goldsmith verify "$$art" --key $(OUT)/demo-key.pub && \
	  echo "template: $$art/disk.qcow2" && \
	  echo "manifest: $$art/manifest.dsse.json" && \
	  echo "report:   $$art/report.html"

# Figures, not tests: build stage times and sizes, then check throughput
# (batched vs one command per check) on the template just built.
bench: deps
	$(BIN)/python tests/bench/build.py --out $(OUT)/bench
	$(BIN)/python tests/bench/noop.py --out $(OUT)/bench
	$(BIN)/python tests/bench/provision.py --out $(OUT)/bench
	$(BIN)/python tests/bench/checks.py $(OUT)/bench/debian-12-baseline-1.0.0
	$(BIN)/python tests/bench/build.py --out $(OUT)/bench --spec templates/debian-12-cis-level1.yaml
	$(BIN)/python tests/bench/checks.py $(OUT)/bench/debian-12-cis-level1-1.0.0
	$(BIN)/python tests/bench/build.py --out $(OUT)/bench --spec templates/debian-12-hardened.yaml
	$(BIN)/python tests/bench/checks.py $(OUT)/bench/debian-12-hardened-1.0.0
	$(BIN)/python tests/bench/blockscan.py $(OUT)/bench/debian-12-baseline-1.0.0
	$(BIN)/python tests/bench/level2.py --out $(OUT)/bench
	$(BIN)/python tests/bench/level2.py --out $(OUT)/bench --spec templates/debian-12-hardened.yaml
	$(BIN)/python -m tests.bench.verify_hash
	$(BIN)/python -m tests.bench.ship
	$(BIN)/python -m tests.bench.packer --out $(OUT)/bench

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache
