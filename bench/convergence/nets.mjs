/**
 * The networks of the convergence benchmark, in plain JavaScript: a dense layer, a 3×3 convolution,
 * sigmoid and ReLU, softmax cross-entropy and SGD, written for this benchmark and small enough to
 * read. Only the normalization layers come from simdnorm (`BatchNorm` with its `renorm` and
 * `virtualBatchSize` variants, `GroupNorm`, `LayerNorm`), called through the library object `api`
 * that the caller passes in (dist/ in Node, dist/browser.js in the page, lib/ in the test).
 *
 * Arrays: activations and parameters are Float32Array (what the normalization layers take);
 * the dense and conv sums run in float64 (JavaScript numbers), gradients are Float64Array.
 * A layer is { forward(x, n) → y, backward(dy) → dx, params: [{ value, grad }], outShape }.
 */

/** The two networks. */
export const NETS = {
  /** The BatchNorm paper's Figure 1 (Ioffe & Szegedy 2015, §4.1): 784–100–100–100–10, sigmoid, BN before each sigmoid. */
  mlp: 'mlp',
  /** A small conv net: conv 3×3/2 (8) → norm+ReLU → conv 3×3/2 (16) → norm+ReLU → dense 784 → 10. */
  conv: 'conv',
};

/** The normalizations of experiment (b), in chart order. */
export const NORMS = ['bn', 'renorm', 'ghost', 'gn', 'ln', 'none'];
export const NORM_LABEL = {
  bn: 'BatchNorm',
  renorm: 'Batch Renorm',
  ghost: 'ghost BatchNorm',
  gn: 'GroupNorm',
  ln: 'LayerNorm',
  none: 'no normalization',
};

// ---------------------------------------------------------------------------------------------
// Layers written for the benchmark

/** y = x·W + b, W stored [in][out]; zero inputs are skipped (most MNIST pixels are 0). */
class Dense {
  constructor(inputs, outputs, { rng, std, bias, needInputGrad }) {
    this.inputs = inputs;
    this.outputs = outputs;
    this.outShape = [outputs];
    this.W = new Float32Array(inputs * outputs);
    for (let i = 0; i < this.W.length; i++) this.W[i] = std * rng.normal();
    this.dW = new Float64Array(this.W.length);
    this.b = bias ? new Float32Array(outputs) : null;
    this.db = bias ? new Float64Array(outputs) : null;
    this.needInputGrad = needInputGrad;
    this.params = [{ value: this.W, grad: this.dW }, ...(bias ? [{ value: this.b, grad: this.db }] : [])];
    this.acc = new Float64Array(outputs);
  }

  forward(x, n) {
    const { inputs: I, outputs: O, W, b, acc } = this;
    const y = new Float32Array(n * O);
    for (let s = 0; s < n; s++) {
      if (b) for (let o = 0; o < O; o++) acc[o] = b[o];
      else acc.fill(0);
      for (let i = 0; i < I; i++) {
        const v = x[s * I + i];
        if (v === 0) continue;
        const row = i * O;
        for (let o = 0; o < O; o++) acc[o] += v * W[row + o];
      }
      for (let o = 0; o < O; o++) y[s * O + o] = acc[o];
    }
    this.x = x;
    this.n = n;
    return y;
  }

  backward(dy) {
    const { inputs: I, outputs: O, W, dW, db, x, n } = this;
    dW.fill(0);
    for (let s = 0; s < n; s++) {
      for (let i = 0; i < I; i++) {
        const v = x[s * I + i];
        if (v === 0) continue;
        const row = i * O;
        for (let o = 0; o < O; o++) dW[row + o] += v * dy[s * O + o];
      }
    }
    if (db) {
      db.fill(0);
      for (let s = 0; s < n; s++) for (let o = 0; o < O; o++) db[o] += dy[s * O + o];
    }
    if (!this.needInputGrad) return null;
    const dx = new Float32Array(n * I);
    for (let s = 0; s < n; s++) {
      for (let i = 0; i < I; i++) {
        let sum = 0;
        const row = i * O;
        for (let o = 0; o < O; o++) sum += dy[s * O + o] * W[row + o];
        dx[s * I + i] = sum;
      }
    }
    return dx;
  }
}

/** A k×k convolution, stride 2, padding 1, NCHW; W stored [out][in][k][k]. */
class Conv {
  constructor([C, H, W], outChannels, { rng, std, bias, needInputGrad, k = 3, stride = 2, pad = 1 }) {
    Object.assign(this, { C, H, W, K: outChannels, k, stride, pad, needInputGrad });
    this.Ho = Math.floor((H + 2 * pad - k) / stride) + 1;
    this.Wo = Math.floor((W + 2 * pad - k) / stride) + 1;
    this.outShape = [outChannels, this.Ho, this.Wo];
    this.w = new Float32Array(outChannels * C * k * k);
    for (let i = 0; i < this.w.length; i++) this.w[i] = std * rng.normal();
    this.dw = new Float64Array(this.w.length);
    this.b = bias ? new Float32Array(outChannels) : null;
    this.db = bias ? new Float64Array(outChannels) : null;
    this.params = [{ value: this.w, grad: this.dw }, ...(bias ? [{ value: this.b, grad: this.db }] : [])];
    // Per kernel offset, the output rows (columns) whose input row (column) lies inside the image: [from, to).
    const inside = (offset, size, outSize) => [Math.max(0, Math.ceil((pad - offset) / stride)), Math.min(outSize, Math.floor((size - 1 + pad - offset) / stride) + 1)];
    this.rows = Array.from({ length: k }, (_, ky) => inside(ky, H, this.Ho));
    this.cols = Array.from({ length: k }, (_, kx) => inside(kx, W, this.Wo));
  }

  forward(x, n) {
    const { C, H, W, K, k, stride, pad, Ho, Wo, w, b, rows, cols } = this;
    const y = new Float64Array(n * K * Ho * Wo);
    for (let s = 0; s < n; s++) {
      for (let o = 0; o < K; o++) {
        const out = (s * K + o) * Ho * Wo;
        if (b) y.fill(b[o], out, out + Ho * Wo);
        for (let c = 0; c < C; c++) {
          for (let ky = 0; ky < k; ky++) {
            const [oy0, oy1] = rows[ky];
            for (let kx = 0; kx < k; kx++) {
              const [ox0, ox1] = cols[kx];
              const wv = w[((o * C + c) * k + ky) * k + kx];
              const inp = (s * C + c) * H * W + (ky - pad) * W + (kx - pad);
              for (let oy = oy0; oy < oy1; oy++) {
                const yRow = out + oy * Wo;
                const xRow = inp + oy * stride * W;
                for (let ox = ox0; ox < ox1; ox++) y[yRow + ox] += wv * x[xRow + ox * stride];
              }
            }
          }
        }
      }
    }
    this.x = x;
    this.n = n;
    return Float32Array.from(y);
  }

  backward(dy) {
    const { C, H, W, K, k, stride, pad, Ho, Wo, w, dw, db, x, n, rows, cols } = this;
    dw.fill(0);
    const dx = this.needInputGrad ? new Float64Array(n * C * H * W) : null;
    for (let s = 0; s < n; s++) {
      for (let o = 0; o < K; o++) {
        const out = (s * K + o) * Ho * Wo;
        for (let c = 0; c < C; c++) {
          for (let ky = 0; ky < k; ky++) {
            const [oy0, oy1] = rows[ky];
            for (let kx = 0; kx < k; kx++) {
              const [ox0, ox1] = cols[kx];
              const wi = ((o * C + c) * k + ky) * k + kx;
              const wv = w[wi];
              const inp = (s * C + c) * H * W + (ky - pad) * W + (kx - pad);
              let sum = 0;
              for (let oy = oy0; oy < oy1; oy++) {
                const yRow = out + oy * Wo;
                const xRow = inp + oy * stride * W;
                for (let ox = ox0; ox < ox1; ox++) {
                  sum += dy[yRow + ox] * x[xRow + ox * stride];
                  if (dx) dx[xRow + ox * stride] += dy[yRow + ox] * wv;
                }
              }
              dw[wi] += sum;
            }
          }
        }
      }
    }
    if (db) {
      db.fill(0);
      for (let s = 0; s < n; s++) for (let o = 0; o < K; o++) for (let p = 0; p < Ho * Wo; p++) db[o] += dy[(s * K + o) * Ho * Wo + p];
    }
    return dx ? Float32Array.from(dx) : null;
  }
}

class Sigmoid {
  constructor(shape) {
    this.outShape = shape;
    this.params = [];
  }
  forward(x) {
    this.y = x.map((v) => 1 / (1 + Math.exp(-v)));
    return this.y;
  }
  backward(dy) {
    const { y } = this;
    return dy.map((g, i) => g * y[i] * (1 - y[i]));
  }
}

class Relu {
  constructor(shape) {
    this.outShape = shape;
    this.params = [];
  }
  forward(x) {
    this.y = x.map((v) => (v > 0 ? v : 0));
    return this.y;
  }
  backward(dy) {
    const { y } = this;
    return dy.map((g, i) => (y[i] > 0 ? g : 0));
  }
}

// ---------------------------------------------------------------------------------------------
// The normalization layers: simdnorm's

/**
 * A simdnorm normalization layer over a [n, ...shape] tensor (features [F] or NCHW [C, H, W]).
 * `norm`: 'bn' | 'renorm' | 'ghost' | 'gn' | 'ln'. `activation: 'relu'` uses the layers' fused ReLU.
 */
class Norm {
  constructor(api, norm, shape, { activation = 'none', virtualBatchSize = null, renorm = null, groups = 4, momentum = 0.9 }) {
    this.outShape = shape;
    this.kind = norm;
    const C = shape[0];
    if (norm === 'bn' || norm === 'renorm' || norm === 'ghost') {
      this.layer = new api.BatchNorm(C, {
        activation,
        momentum,
        ...(norm === 'renorm' ? { renorm } : {}),
        ...(norm === 'ghost' ? { virtualBatchSize } : {}),
      });
      this.params = [
        { value: this.layer.gamma, grad: () => this.layer.dgamma },
        { value: this.layer.beta, grad: () => this.layer.dbeta },
      ];
    } else if (norm === 'gn') {
      this.layer = new api.GroupNorm(Math.min(groups, C), C, { activation });
      this.params = [
        { value: this.layer.gamma, grad: () => this.layer.dgamma },
        { value: this.layer.beta, grad: () => this.layer.dbeta },
      ];
    } else if (norm === 'ln') {
      this.layer = new api.LayerNorm(shape, { activation });
      this.params = [
        { value: this.layer.weight, grad: () => this.layer.dweight },
        { value: this.layer.bias, grad: () => this.layer.dbias },
      ];
    } else {
      throw new Error(`unknown normalization ${norm}`);
    }
  }
  setTraining(training) {
    this.layer.train?.(training);
  }
  forward(x, n) {
    return this.layer.forward(x, [n, ...this.outShape]);
  }
  backward(dy) {
    return this.layer.backward(dy);
  }
}

// ---------------------------------------------------------------------------------------------
// Networks

/**
 * Builds a network. `spec`: { net: 'mlp' | 'conv', norm: 'none' | 'bn' | …, seed, virtualBatchSize?,
 * renorm? (a schedule), momentum? }. Returns { layers, probes } where probes are the layers whose
 * output is a sigmoid's input (the MLP's three hidden pre-activations, for Figure 1(b,c)).
 */
export function buildNet(api, Random, spec) {
  const rng = new Random(spec.seed);
  const normalized = spec.norm !== 'none';
  const layers = [];
  const probes = [];
  const normOptions = { virtualBatchSize: spec.virtualBatchSize ?? null, renorm: spec.renorm ?? null, momentum: spec.momentum ?? 0.9 };
  if (spec.net === 'mlp') {
    // Weights N(0, 1/fan_in) (the paper: "small random Gaussian values"); a bias only where no BN follows.
    let inputs = 784;
    for (let h = 0; h < 3; h++) {
      layers.push(new Dense(inputs, 100, { rng, std: 1 / Math.sqrt(inputs), bias: !normalized, needInputGrad: h > 0 }));
      if (normalized) layers.push(new Norm(api, spec.norm, [100], normOptions));
      probes.push(layers.length - 1);
      layers.push(new Sigmoid([100]));
      inputs = 100;
    }
    layers.push(new Dense(100, 10, { rng, std: 1 / Math.sqrt(100), bias: true, needInputGrad: true }));
  } else if (spec.net === 'conv') {
    // He init N(0, 2/fan_in) before ReLU; the norm's ReLU is fused into it.
    let shape = [1, 28, 28];
    for (const [k, channels] of [8, 16].entries()) {
      const conv = new Conv(shape, channels, { rng, std: Math.sqrt(2 / (shape[0] * 9)), bias: !normalized, needInputGrad: k > 0 });
      layers.push(conv);
      shape = conv.outShape;
      if (normalized) layers.push(new Norm(api, spec.norm, shape, { ...normOptions, activation: 'relu' }));
      else layers.push(new Relu(shape));
    }
    const features = shape.reduce((a, b) => a * b, 1);
    layers.push(new Dense(features, 10, { rng, std: 1 / Math.sqrt(features), bias: true, needInputGrad: true }));
  } else {
    throw new Error(`unknown net ${spec.net}`);
  }
  return { layers, probes, spec };
}

/** Forward through every layer; `record(k, y)` sees each layer's output. */
export function forward(net, x, n, training, record) {
  for (const layer of net.layers) layer.setTraining?.(training);
  let h = x;
  net.layers.forEach((layer, k) => {
    h = layer.forward(h, n);
    record?.(k, h);
  });
  return h;
}

/** Backward from dlogits through every layer (the first layer's input gradient is not needed). */
export function backward(net, dlogits) {
  let g = dlogits;
  for (let k = net.layers.length - 1; k >= 0 && g !== null; k--) g = net.layers[k].backward(g);
}

/** Plain SGD on every parameter. */
export function sgdStep(net, lr) {
  for (const layer of net.layers) {
    for (const { value, grad } of layer.params) {
      const g = typeof grad === 'function' ? grad() : grad;
      for (let i = 0; i < value.length; i++) value[i] -= lr * g[i];
    }
  }
}

/**
 * Softmax cross-entropy over logits [n, 10] in float64: the mean loss, the number of correct
 * argmax predictions, and (with `withGrad`) dlogits = (softmax − onehot)/n.
 */
export function softmaxCrossEntropy(logits, labels, n, withGrad) {
  const dlogits = withGrad ? new Float32Array(n * 10) : null;
  let loss = 0;
  let correct = 0;
  const p = new Float64Array(10);
  for (let s = 0; s < n; s++) {
    let max = -Infinity;
    let arg = 0;
    for (let j = 0; j < 10; j++) {
      const v = logits[s * 10 + j];
      if (v > max) [max, arg] = [v, j];
    }
    let sum = 0;
    for (let j = 0; j < 10; j++) sum += p[j] = Math.exp(logits[s * 10 + j] - max);
    loss -= Math.log(p[labels[s]] / sum);
    if (arg === labels[s]) correct++;
    if (dlogits) for (let j = 0; j < 10; j++) dlogits[s * 10 + j] = (p[j] / sum - (j === labels[s] ? 1 : 0)) / n;
  }
  return { loss: loss / n, correct, dlogits };
}
