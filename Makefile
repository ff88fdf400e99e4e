# sam build runs the target named after each resource whose Metadata says BuildMethod: makefile
# (template.yaml), with ARTIFACTS_DIR set to the directory that becomes its code. Both functions
# share one package; the layer holds ffmpeg. scripts/build_lambda does the work, so `sam build`
# and a build by hand (scripts/build_lambda build/lambda) make the same packages.
# samconfig.toml sets build_in_source: make runs here, not in a copy of the work tree.
.PHONY: build-ApiFunction build-WorkerFunction build-FfmpegLayer

build-ApiFunction build-WorkerFunction:
	scripts/build_lambda --only function "$(ARTIFACTS_DIR)"

build-FfmpegLayer:
	scripts/build_lambda --only layer "$(ARTIFACTS_DIR)"
