// Dense float64 matrices for the PEFT conversions: products, transposes, a Cholesky solve.
// Sizes are at most a few thousand by a rank of at most 256, so plain loops are enough.

/** A row-major `rows × cols` float64 matrix. */
export interface Matrix {
  rows: number;
  cols: number;
  data: Float64Array;
}

export function matrix(rows: number, cols: number, data?: Float64Array): Matrix {
  const d = data ?? new Float64Array(rows * cols);
  if (d.length !== rows * cols)
    throw new Error(`matrix ${rows}×${cols} needs ${rows * cols} values; got ${d.length}`);
  return { rows, cols, data: d };
}

/** a · b (i-k-j loop order: streams rows of b). */
export function matmul(a: Matrix, b: Matrix): Matrix {
  if (a.cols !== b.rows)
    throw new Error(`cannot multiply ${a.rows}×${a.cols} by ${b.rows}×${b.cols}`);
  const out = matrix(a.rows, b.cols);
  const { data: A } = a;
  const { data: B } = b;
  const C = out.data;
  const n = b.cols;
  for (let i = 0; i < a.rows; i++) {
    const ci = i * n;
    for (let k = 0; k < a.cols; k++) {
      const aik = A[i * a.cols + k] as number;
      if (aik === 0) continue;
      const bk = k * n;
      for (let j = 0; j < n; j++) C[ci + j] = (C[ci + j] as number) + aik * (B[bk + j] as number);
    }
  }
  return out;
}

export function transpose(a: Matrix): Matrix {
  const out = matrix(a.cols, a.rows);
  for (let i = 0; i < a.rows; i++) {
    for (let j = 0; j < a.cols; j++) out.data[j * a.rows + i] = a.data[i * a.cols + j] as number;
  }
  return out;
}

export function scale(a: Matrix, s: number): Matrix {
  return matrix(
    a.rows,
    a.cols,
    a.data.map((x) => x * s),
  );
}

export function subtract(a: Matrix, b: Matrix): Matrix {
  if (a.rows !== b.rows || a.cols !== b.cols)
    throw new Error(`cannot subtract ${b.rows}×${b.cols} from ${a.rows}×${a.cols}`);
  return matrix(
    a.rows,
    a.cols,
    a.data.map((x, i) => x - (b.data[i] as number)),
  );
}

/** Frobenius norm. */
export function frobenius(a: Matrix): number {
  let s = 0;
  for (const x of a.data) s += x * x;
  return Math.sqrt(s);
}

/** Solves X · S = B for X, with S symmetric positive definite (Cholesky S = L Lᵀ). */
export function solveRightSpd(b: Matrix, s: Matrix, what: string): Matrix {
  const n = s.rows;
  if (s.cols !== n || b.cols !== n)
    throw new Error(`solve needs a square ${b.cols}×${b.cols} matrix; got ${s.rows}×${s.cols}`);
  const L = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = s.data[j * n + j] as number;
    for (let k = 0; k < j; k++) d -= (L[j * n + k] as number) ** 2;
    if (!(d > 0)) {
      throw new Error(
        `${what} is not positive definite (pivot ${j} is ${d}); its factors are rank-deficient`,
      );
    }
    const ljj = Math.sqrt(d);
    L[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let v = s.data[i * n + j] as number;
      for (let k = 0; k < j; k++) v -= (L[i * n + k] as number) * (L[j * n + k] as number);
      L[i * n + j] = v / ljj;
    }
  }
  // X L Lᵀ = B: each row x of X solves (L Lᵀ) xᵀ = bᵀ, since S is symmetric.
  const out = matrix(b.rows, n);
  const y = new Float64Array(n);
  for (let r = 0; r < b.rows; r++) {
    for (let i = 0; i < n; i++) {
      let v = b.data[r * n + i] as number;
      for (let k = 0; k < i; k++) v -= (L[i * n + k] as number) * (y[k] as number);
      y[i] = v / (L[i * n + i] as number);
    }
    for (let i = n - 1; i >= 0; i--) {
      let v = y[i] as number;
      for (let k = i + 1; k < n; k++)
        v -= (L[k * n + i] as number) * (out.data[r * n + k] as number);
      out.data[r * n + i] = v / (L[i * n + i] as number);
    }
  }
  return out;
}
