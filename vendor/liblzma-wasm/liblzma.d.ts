// Emscripten's module factory for liblzma.wasm (see README.md). Bulwark hands it `instantiateWasm`, so the
// module is ready when the call returns; its own Promise is not used.
declare function createLiblzma(module: object): Promise<unknown>;
export default createLiblzma;
