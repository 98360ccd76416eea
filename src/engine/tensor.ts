// Placeholder surface of the engine's tensor; the engine work replaces this file.
export class Tensor {
  grad: Float32Array | null = null;
  constructor(
    public data: Float32Array,
    public shape: number[],
    public requiresGrad = false,
  ) {}
}
