// Bundled for Node by .ci/run (transformers.js and onnxruntime-node left
// external, resolved from an npm install beside the bundle): the guard, the
// signing API and transformers.js itself from one module graph, so error
// classes and the onnxruntime instance are shared.
export * from "../../plugins/transformers.ts";
export * from "../../sign/mod.ts";
export * as transformers from "@huggingface/transformers";
