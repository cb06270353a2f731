// The transformers.js guard tests again, with weights kept as verified
// buffers instead of private files (`weights: "memory"`): the route a browser
// takes, exercised here with real transformers.js and onnxruntime-node.
Deno.env.set("SAFEMODELS_GUARD_WEIGHTS", "memory");
await import("./transformers_test.ts");
