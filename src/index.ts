// Public API of dyllm (filled in as the engine grows).
export {};
