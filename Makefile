# netdef's everyday commands.  `make demo` and `make test` each set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NETDEF := $(BIN)/netdef
JOBS ?= 2

.PHONY: install demo test test-fast bench lint proto clean fuzz

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,proto]'
	touch $(STAMP)

install: $(STAMP)

# The main job: Fashion-MNIST -> LMDB -> LeNet trained with the stock solver.
demo: install
	examples/mnist/get_fashion_mnist.sh
	NETDEF=$(NETDEF) examples/mnist/create_mnist.sh data/fashion-mnist
	$(NETDEF) train --solver=examples/mnist/lenet_solver.prototxt 2>&1 | tee examples/mnist/train.log
	@grep "Test net output #0" examples/mnist/train.log | tail -1 | sed 's/.*Test net output #0: /Final test /'
	@ls -l examples/mnist/lenet_iter_10000.caffemodel

# Two test workers share the cores: one BLAS thread each (see netdef/threads.py).
test: install
	NETDEF_SHARED_CPU=1 $(BIN)/python -m pytest -q -n $(JOBS) --durations=15

test-fast: install
	NETDEF_SHARED_CPU=1 $(BIN)/python -m pytest -q -x -n $(JOBS) -m "not slow"

bench: install
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/run.py --net cifar --batch 100 --iters 20
	$(BIN)/python benchmarks/run.py --net caffenet --batch 16 --iters 5 --warmup 3
	$(BIN)/python benchmarks/bench_glue.py
	$(BIN)/python benchmarks/bench_inference.py
	$(BIN)/python benchmarks/bench_scaling.py

fuzz: install
	$(BIN)/python -m tests.fuzz --count $${FUZZ_CASES:-2000} --seed $${FUZZ_SEED:-1} --jobs $(JOBS)

lint: install
	$(BIN)/ruff check .

proto: install
	$(BIN)/python tools/gen_proto.py

clean:
	rm -rf $(VENV) build *.egg-info
