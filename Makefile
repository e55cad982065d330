# The two commands: `make dev` runs the whole thing locally, `make test` runs every test.
SHELL := /bin/bash
.PHONY: dev test unit mutants stack stop token bench fmt lint sam-local sam-build

dev: ## Stack + API on http://127.0.0.1:8787 (Ctrl-C stops the API; `make stop` the stack)
	bash scripts/dev.sh

test: ## Every test: lint, unit, end-to-end (real local stack), template, Lambda smoke
	bash scripts/test.sh

unit: ## Tests that need no local stack (seconds): unit, crash windows on in-memory ports, IAM vs template
	bash scripts/unit.sh

mutants: ## Break the completion protocol on purpose; fails if the unit tests miss a break
	bash scripts/mutants.sh

sam-local: ## The deployable artifact under SAM's emulator: sam build, invoke every function, the API flow via start-api
	bash scripts/sam_local.sh

sam-build: ## Build what `sam deploy` uploads: make sam-build [ARCH=arm64|x86_64] (arm64 by default, as deployed)
	bash scripts/sam_build.sh $${ARCH:-arm64}

stack: ## Only the local AWS stack
	bash scripts/stack.sh start

stop: ## Stop everything the scripts started
	bash scripts/stack.sh stop
	bash scripts/docker.sh stop

token: ## Print a dev bearer token: make token OWNER=alice
	@source scripts/env.sh && cargo run -q $$([ "$${HOIST_DEV_PROFILE:-release}" = debug ] || echo --release) -p hoist-dev -- token $${OWNER:-alice}

bench: ## Benchmarks (writes bench/ results)
	bash scripts/bench.sh

fmt:
	cargo fmt --all
