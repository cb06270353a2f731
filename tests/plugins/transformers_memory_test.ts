// The transformers.js guard tests again, with weights kept as verified
// buffers instead of private files (`weights: "memory"`): the route a browser
// takes, exercised here with real transformers.js and onnxruntime-node.
// Each test module has its own global scope (the process environment is shared).
(globalThis as { safemodelsGuardWeights?: string }).safemodelsGuardWeights = "memory";
await import("./transformers_test.ts");
await import("./guard_decision_test.ts");
await import("./guard_reuse_test.ts");
