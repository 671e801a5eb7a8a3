# The two commands that matter (see README.md):
#   make run    set up .venv, get Fashion-MNIST, run the main job (BadNets 10%, no defense, classroom scale)
#   make test   set up .venv and run the test suite (pytest + notebooks)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: setup data run test bench course student book clean

$(BIN)/asdkit: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1 || $(BIN)/pip install --quiet torch torchvision
	$(BIN)/pip install --quiet -e '.[notebooks,test,book]'
	touch $(BIN)/asdkit

setup: $(BIN)/asdkit

# Debian/Ubuntu ship Fashion-MNIST as a package; elsewhere the first run downloads it with torchvision.
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y -qq dataset-fashion-mnist >/dev/null || echo "apt-get failed; the loader will download Fashion-MNIST instead"; fi

run: setup data
	$(BIN)/asdkit run $(ARGS)

test: setup data
	$(BIN)/pytest -q $(ARGS)

# every record the notebooks read, at classroom scale (resumable; the evening before a class)
course: setup data
	$(BIN)/asdkit course prepare $(ARGS)

# the course as a static HTML book in build/book/html: the notebooks executed against the prepared records (SCALE=smoke for a quick one)
SCALE ?= classroom
book: setup data
	ASDKIT_SCALE=$(SCALE) $(BIN)/asdkit course prepare --scale $(SCALE) --quiet
	$(BIN)/python book/build.py --scale $(SCALE)

student: setup
	$(BIN)/asdkit notebooks --student student

bench: setup
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf runs .pytest_cache test-artifacts student
