// A batched-ensemble layer: k members over the same rows in one pass (TabM's BatchEnsemble and its kin).
// Row-member rm = b k + i is batch row b seen by member i; member i computes
//   y[rm] = f(((x[b or rm] * r_i) W_i^T) * s_i + b_i)
// with W and b shared or per member and r, s present or not, as the LayerShape says (ParameterLayout).
// Layer 0 reads one input row per batch row (all members see the same features); later layers one per row-member.
//
// Backward, from d = dL/dz at the pre-activation (rows k, out):
//   dpre = d * s_i                      the gradient at (x * r_i) W_i^T
//   dW_i += dpre^T (x * r_i)            summed over the rows of member i (all row-members when W is shared)
//   db_i += d,  ds_i += d * pre         likewise
//   g = dpre W_i                        the gradient at x * r_i
//   dr_i += g * x,  dx = g * r_i * f'(x)   (layer 0 with shared input rows: dx[b] = sum_i g[b k + i] * r_i)
// A grouped layer (ParameterLayout) sums output o over its group's inputs only: W's rows are InputsPerGroup long.
// Reference, kernels (one element per work item, sums in row-member order: no atomics, the same bits each
// run) and launchers, side by side. One member without adapters is Dense's layer (Dense keeps the tiled
// kernels for it); the reference then does Dense's sums in Dense's order.
using System.Numerics;
using ILGPU;

namespace HitGpu.Kernels;

public struct BatchedLayerArgs
{
    public RowSource X;                          // the layer's input rows: (rows, in) when InputShared, else (rows k, in)
    public ArrayView<float> Parameters;          // the flat parameter array
    public ArrayView<float> Gradients;           // the flat gradient array (backward)
    public ArrayView<float> PreScale;            // (rows k, out) (x * r) W^T, when the layer has s
    public ArrayView<float> PreActivation;       // (rows k, out) z, when the layer keeps it (a cosine)
    public ArrayView<float> InputPreActivation;  // (rows k, in) the previous layer's z, when its slope needs it
    public ArrayView<float> Y;                   // (rows k, out) activated outputs (forward)
    public ArrayView<float> OutputGradient;      // (rows k, out) dL/dz (backward)
    public ArrayView<float> ScaledInputGradient; // (rows k, in) g, the gradient at x * r (backward, when needed)
    public ArrayView<float> InputGradient;       // dL/dz of the previous layer: (rows k, in), or (rows, in) when InputShared
    public LayerShape Layer;
    public int Rows, Members;
    public int InputShared;                      // 1: row-member rm reads input row rm / k (layer 0)
    public int InputActivation;                  // the activation that produced X
}

/// <summary>
/// The order in which one output's terms are added (<see cref="BatchedDense.SumStart"/>): the bits of a sum
/// depend on it, so the paths that must agree to the bit name the same one.
/// </summary>
public enum SumOrder
{
    /// <summary>
    /// The bias first, then the inputs in order (without s): the simple layered kernels (Dense's and these) and
    /// the CPU epoch's prediction, so that on the CPU accelerator (whose plan picks the simple kernels)
    /// prediction gives the same bits on either path. The tiled product adds the bias in its epilogue instead.
    /// </summary>
    FromBias,
    /// <summary>The inputs from 0, the bias after: the CPU epoch's training and scoring passes (a lone row in four running sums).</summary>
    BiasLast,
}

/// <summary>Eight floats: a column window's values, two 16-byte vectors.</summary>
public struct Float8
{
    public Float4 Lo, Hi;

    public Float8(Float4 lo, Float4 hi) => (Lo, Hi) = (lo, hi);

    /// <summary>sum + a b, column by column (each column's sum as one at a time would add it).</summary>
    public static Float8 Fma(Float8 sum, Float8 a, Float8 b) => new(Fma(sum.Lo, a.Lo, b.Lo), Fma(sum.Hi, a.Hi, b.Hi));

    public static Float8 Add(Float8 sum, Float8 a) => new(
        new Float4(sum.Lo.X + a.Lo.X, sum.Lo.Y + a.Lo.Y, sum.Lo.Z + a.Lo.Z, sum.Lo.W + a.Lo.W),
        new Float4(sum.Hi.X + a.Hi.X, sum.Hi.Y + a.Hi.Y, sum.Hi.Z + a.Hi.Z, sum.Hi.W + a.Hi.W));

    private static Float4 Fma(Float4 s, Float4 a, Float4 b) => new(s.X + a.X * b.X, s.Y + a.Y * b.Y, s.Z + a.Z * b.Z, s.W + a.W * b.W);
}

/// <summary>
/// Eight neighbouring columns of a row: a batched reduction's share of work. The window read is always eight
/// columns inside the row from <see cref="First"/> (the last window of a row moved back to end at the row's
/// end, its first <see cref="Skip"/> columns the window before's, summed twice and stored once), so one row's
/// loads sit at fixed offsets from one address: two 16-byte loads where the rows are aligned (VectorLoads),
/// eight scalar ones otherwise. A row narrower than eight has one window, its loads clamped to the row
/// (RowCursor.LoadClamped; <see cref="Wide"/> false).
/// </summary>
public readonly struct ColumnWindow
{
    public const int Width = 8;
    public readonly int First, Skip, Columns;      // the window's first column; those stored: [First + Skip, First + Columns)
    private readonly int last;                     // the window's last column in the row, from First (clamps the loads)

    private ColumnWindow(int window, int cols)
    {
        First = cols >= Width ? Math.Min(Width * window, cols - Width) : 0;
        Skip = Width * window - First;
        Columns = Math.Min(Width, cols - First);
        last = Columns - 1;
    }

    /// <summary>How many windows cover <paramref name="cols"/> columns.</summary>
    public static int Count(int cols) => (cols + Width - 1) / Width;

    public static ColumnWindow Of(int window, int cols) => new(window, cols);

    /// <summary>Whether the window is eight columns of the row (RowCursor.Load may read it).</summary>
    public bool Wide => Columns == Width;

    /// <summary>The column First + c of the window, clamped to the row.</summary>
    public int Clamped(int c) => Math.Min(c, last);

    /// <summary>The window's own columns of <paramref name="v"/>, from element <paramref name="at"/> (its column First).</summary>
    public void Store(ArrayView<float> data, long at, Float8 v)
    {
        StoreOne(data, at, 0, v.Lo.X);
        StoreOne(data, at, 1, v.Lo.Y);
        StoreOne(data, at, 2, v.Lo.Z);
        StoreOne(data, at, 3, v.Lo.W);
        StoreOne(data, at, 4, v.Hi.X);
        StoreOne(data, at, 5, v.Hi.Y);
        StoreOne(data, at, 6, v.Hi.Z);
        StoreOne(data, at, 7, v.Hi.W);
    }

    private void StoreOne(ArrayView<float> data, long at, int c, float value)
    {
        if (c >= Skip && c < Columns)
            data[at + c] = value;
    }
}

/// <summary>
/// A view of one row from a column window on, that steps a row at a time: 16-byte vectors for vector loads
/// (cast from the kernel's argument), floats otherwise. A cursor starts each pass of a loop afresh from
/// the row's index and steps only inside it, to rows that exist: ILGPU checks a view's bounds on the CPU
/// accelerator, and a cursor carried from pass to pass through a choice loses its alignment (scalar loads).
/// </summary>
public readonly struct RowCursor<TLoads> where TLoads : struct, IProductLoads
{
    private readonly ArrayView<float> scalars;
    private readonly ArrayView<Float4> vectors;

    private RowCursor(ArrayView<float> scalars, ArrayView<Float4> vectors) => (this.scalars, this.vectors) = (scalars, vectors);

    /// <summary>A cursor at element <paramref name="at"/> of <paramref name="data"/> (a multiple of 4 for vector loads).</summary>
    public static RowCursor<TLoads> At(ArrayView<float> data, long at) =>
        default(TLoads).Vector ? new(default, data.Cast<Float4>().SubView(at >> 2)) : new(data.SubView(at), default);

    /// <summary>A step of <paramref name="elements"/> (a multiple of 4 for vector loads) in the cursor's units, found once before a loop.</summary>
    public static long Units(long elements) => default(TLoads).Vector ? elements >> 2 : elements;

    /// <summary>The cursor <paramref name="units"/> on (<see cref="Units"/>): a row that exists, or an element of one.</summary>
    public RowCursor<TLoads> Next(long units) =>
        default(TLoads).Vector ? new(default, vectors.SubView(units)) : new(scalars.SubView(units), default);

    /// <summary>The window's eight values, when it is eight columns of the row (<see cref="ColumnWindow.Wide"/>).</summary>
    public Float8 Load() => default(TLoads).Vector ? new Float8(vectors[0], vectors[1])
        : new Float8(new Float4(scalars[0], scalars[1], scalars[2], scalars[3]), new Float4(scalars[4], scalars[5], scalars[6], scalars[7]));

    /// <summary>The window's values, any width (past the row's end, its last column again).</summary>
    public Float8 LoadClamped(in ColumnWindow w) => w.Wide ? Load()
        : new Float8(new Float4(scalars[0], scalars[w.Clamped(1)], scalars[w.Clamped(2)], scalars[w.Clamped(3)]),
            new Float4(scalars[w.Clamped(4)], scalars[w.Clamped(5)], scalars[w.Clamped(6)], scalars[w.Clamped(7)]));
}

/// <summary>
/// Four-way work items over n things (row-members, inputs): item q takes q, q + lanes, q + 2 lanes, q + 3 lanes
/// (those below n). Neighbouring threads take neighbouring things; lanes is a multiple of the members, so an
/// item's row-members are one member's (one weight row, one r, one s for the four). The GPU epoch's passes and
/// the lanes kernels below, written once.
/// </summary>
/// <summary>
/// How an unrolled lanes loop addresses its operands, by what ptxas makes of it: shared memory wants views taken
/// at each step and read at fixed offsets (its 32-bit addresses then fold them; a 64-bit index does not);
/// global memory views taken once and a 64-bit index (a view per step costs its 64-bit address each step).
/// </summary>
public interface ILaneViews
{
    bool PerStep { get; }
}

public readonly struct SharedLaneViews : ILaneViews
{
    public bool PerStep => true;
}

public readonly struct GlobalLaneViews : ILaneViews
{
    public bool PerStep => false;
}

public static class FourLanes
{
    public static int Of(int n, int members) => ((n + 3) / 4 + members - 1) / members * members;

    /// <summary>Thing q + c lanes of an item, or q where that passes n (read, not written: its result is dropped).</summary>
    public static int Or(int q, int c, int lanes, int n) => q + c * lanes < n ? q + c * lanes : q;

    /// <summary>sums_c += v_c[at_c] f for the four c (the shared factor on the right: each product's operands in the references' order).</summary>
    public static void Term(ref Sums4 sums, ArrayView<float> v0, ArrayView<float> v1, ArrayView<float> v2, ArrayView<float> v3, long at0, long at1, long at2, long at3, float f)
    {
        sums.S0 += v0[at0] * f;
        sums.S1 += v1[at1] * f;
        sums.S2 += v2[at2] * f;
        sums.S3 += v3[at3] * f;
    }

    public static void Term(ref Sums4 sums, ArrayView<float> v0, ArrayView<float> v1, ArrayView<float> v2, ArrayView<float> v3, long at, float f) =>
        Term(ref sums, v0, v1, v2, v3, at, at, at, at, f);

    /// <summary>sums_c += (v_c[at] s) w: a delta through its output scale, times a weight, in the references' order.</summary>
    public static void ScaledTerm(ref Sums4 sums, ArrayView<float> v0, ArrayView<float> v1, ArrayView<float> v2, ArrayView<float> v3, long at, float s, float w)
    {
        sums.S0 += v0[at] * s * w;
        sums.S1 += v1[at] * s * w;
        sums.S2 += v2[at] * s * w;
        sums.S3 += v3[at] * s * w;
    }

    /// <summary>
    /// Four dot products start + sum_j v_c[x_c + j] w[at + j] (or, with <paramref name="scales"/>, (v_c[x_c + j]
    /// r[scales + j]) w[at + j]), each added in j order: the weight row read once for four. Unrolled by hand
    /// (ILGPU does not unroll), through views taken at j and read at fixed offsets, which ptxas folds into the loads.
    /// </summary>
    public static Sums4 Dots<TViews>(float start, ArrayView<float> v, long x0, long x1, long x2, long x3, ArrayView<float> p, long at, long scales, int n)
        where TViews : struct, ILaneViews
    {
        var sums = new Sums4 { S0 = start, S1 = start, S2 = start, S3 = start };
        if (scales >= 0)
        {
            for (int j = 0; j < n; j++)
            {
                float rj = p[scales + j], wj = p[at + j];
                sums.S0 += v[x0 + j] * rj * wj;
                sums.S1 += v[x1 + j] * rj * wj;
                sums.S2 += v[x2 + j] * rj * wj;
                sums.S3 += v[x3 + j] * rj * wj;
            }
            return sums;
        }
        if (default(TViews).PerStep)
        {
            int i = 0;
            for (; i + 3 < n; i += 4)
            {
                ArrayView<float> v0 = v.SubView(x0 + i), v1 = v.SubView(x1 + i), v2 = v.SubView(x2 + i), v3 = v.SubView(x3 + i);
                var weights = p.SubView(at + i);
                Term(ref sums, v0, v1, v2, v3, 0, weights[0]);
                Term(ref sums, v0, v1, v2, v3, 1, weights[1]);
                Term(ref sums, v0, v1, v2, v3, 2, weights[2]);
                Term(ref sums, v0, v1, v2, v3, 3, weights[3]);
            }
            for (; i < n; i++)
                Term(ref sums, v, v, v, v, x0 + i, x1 + i, x2 + i, x3 + i, p[at + i]);
            return sums;
        }
        {
            ArrayView<float> v0 = v.SubView(x0), v1 = v.SubView(x1), v2 = v.SubView(x2), v3 = v.SubView(x3), weights = p.SubView(at);
            long i = 0;
            for (; i + 3 < n; i += 4)
            {
                Term(ref sums, v0, v1, v2, v3, i, weights[i]);
                Term(ref sums, v0, v1, v2, v3, i + 1, weights[i + 1]);
                Term(ref sums, v0, v1, v2, v3, i + 2, weights[i + 2]);
                Term(ref sums, v0, v1, v2, v3, i + 3, weights[i + 3]);
            }
            for (; i < n; i++)
                Term(ref sums, v0, v1, v2, v3, i, weights[i]);
            return sums;
        }
    }

    /// <summary>
    /// Four sums sum_o (v_c[d_c + o] (s[scales + o])) w[at + o stride] over o in [first, end), each in o order:
    /// the gradient at four row-members' inputs j, each weight read once for four.
    /// </summary>
    public static Sums4 Transposed(ArrayView<float> v, long d0, long d1, long d2, long d3, ArrayView<float> p, long at, int stride, long scales, int first, int end)
    {
        // Shared memory (the GPU epoch's): views at each step, read at fixed offsets (ILaneViews).
        var g = new Sums4();
        int o = first;
        if (scales >= 0)
        {
            for (; o + 3 < end; o += 4)
            {
                ArrayView<float> v0 = v.SubView(d0 + o), v1 = v.SubView(d1 + o), v2 = v.SubView(d2 + o), v3 = v.SubView(d3 + o);
                ArrayView<float> weights = p.SubView(at + o * stride), s = p.SubView(scales + o);
                ScaledTerm(ref g, v0, v1, v2, v3, 0, s[0], weights[0]);
                ScaledTerm(ref g, v0, v1, v2, v3, 1, s[1], weights[stride]);
                ScaledTerm(ref g, v0, v1, v2, v3, 2, s[2], weights[2 * stride]);
                ScaledTerm(ref g, v0, v1, v2, v3, 3, s[3], weights[3 * stride]);
            }
            for (; o < end; o++)
                ScaledTerm(ref g, v.SubView(d0), v.SubView(d1), v.SubView(d2), v.SubView(d3), o, p[scales + o], p[at + o * stride]);
            return g;
        }
        for (; o + 3 < end; o += 4)
        {
            ArrayView<float> v0 = v.SubView(d0 + o), v1 = v.SubView(d1 + o), v2 = v.SubView(d2 + o), v3 = v.SubView(d3 + o);
            var weights = p.SubView(at + o * stride);
            Term(ref g, v0, v1, v2, v3, 0, weights[0]);
            Term(ref g, v0, v1, v2, v3, 1, weights[stride]);
            Term(ref g, v0, v1, v2, v3, 2, weights[2 * stride]);
            Term(ref g, v0, v1, v2, v3, 3, weights[3 * stride]);
        }
        for (; o < end; o++)
            Term(ref g, v, v, v, v, d0 + o, d1 + o, d2 + o, d3 + o, p[at + o * stride]);
        return g;
    }
}

public static class BatchedDense
{
    // ---- device functions ----

    /// <summary>The input row of row-member rm.</summary>
    public static int InputRow(int rm, int members, int inputShared) => inputShared != 0 ? rm / members : rm;

    /// <summary>
    /// Where the sum of one output starts: the one statement of the summation order. The simple layered kernels
    /// and the CPU epoch's prediction sum <see cref="SumOrder.FromBias"/>; the CPU epoch's training passes
    /// <see cref="SumOrder.BiasLast"/>. With s the sum always starts at 0 (s scales the sum before the bias).
    /// </summary>
    public static float SumStart(in LayerShape layer, float bias, SumOrder order) =>
        order == SumOrder.FromBias && !layer.HasOutputScale ? bias : 0f;

    /// <summary>The pre-activation from the sum over the inputs: sum s + b with s; else sum + b, unless the bias started the sum (<see cref="SumStart"/>).</summary>
    public static float Epilogue(in LayerShape layer, float sum, float bias, float s, SumOrder order) =>
        layer.HasOutputScale ? sum * s + bias : order == SumOrder.FromBias ? sum : sum + bias;

    /// <summary>
    /// The pre-activation of one output, summed <see cref="SumOrder.FromBias"/>: (sum_j (x_j r_j) W_oj) s_o + b_o
    /// with s, b_o + sum_j ... without. Writes the sum before s to <paramref name="preScale"/>.
    /// </summary>
    public static float PreActivation(ArrayView<float> x, int xStart, ArrayView<float> p, in LayerShape layer, int member, int o, out float preScale)
    {
        int n = layer.InputsPerGroup, first = layer.FirstInput(o);
        int w = layer.Weight(member) + o * n, r = layer.InputScale(member) + first;
        xStart += first;
        float bias = p[layer.Bias(member) + o];
        float sum = SumStart(layer, bias, SumOrder.FromBias);
        if (layer.HasInputScale)
            for (int j = 0; j < n; j++)
                sum += x[xStart + j] * p[r + j] * p[w + j];
        else
            for (int j = 0; j < n; j++)
                sum += x[xStart + j] * p[w + j];
        preScale = sum;
        return Epilogue(layer, sum, bias, layer.HasOutputScale ? p[layer.OutputScale(member) + o] : 1f, SumOrder.FromBias);
    }

    // ---- reference (any float type; the flat arrays as the ParameterLayout says) ----

    /// <summary>Forward of one layer for <paramref name="rows"/> batch rows: y (rows k, out), preScale likewise (when the layer has s).</summary>
    public static void ForwardReference<T>(LayerShape layer, int members, bool inputShared, ReadOnlySpan<T> x, ReadOnlySpan<T> p,
        Span<T> y, Span<T> preScale, int rows, Span<T> preActivation = default) where T : IFloatingPointIeee754<T>
    {
        int nIn = layer.Inputs, nOut = layer.Outputs;
        for (int rm = 0; rm < rows * members; rm++)
        {
            int i = rm % members, xStart = (inputShared ? rm / members : rm) * nIn;
            for (int o = 0; o < nOut; o++)
            {
                T bias = p[layer.Bias(i) + o];
                T sum = layer.HasOutputScale ? T.Zero : bias;
                for (int j = 0, first = layer.FirstInput(o); j < layer.InputsPerGroup; j++)
                {
                    T input = layer.HasInputScale ? x[xStart + first + j] * p[layer.InputScale(i) + first + j] : x[xStart + first + j];
                    sum += input * p[layer.Weight(i) + o * layer.InputsPerGroup + j];
                }
                if (layer.HasOutputScale)
                {
                    preScale[rm * nOut + o] = sum;
                    sum = sum * p[layer.OutputScale(i) + o] + bias;
                }
                if (layer.KeepsPreActivation)
                    preActivation[rm * nOut + o] = sum;
                y[rm * nOut + o] = Activations.ApplyReference((Activation)layer.Activation, sum);
            }
        }
    }

    /// <summary>
    /// Backward of one layer: the layer's parameter gradients written (not added) into <paramref name="gradient"/>,
    /// and, when <paramref name="inputGradient"/> is not empty, dL/dz of the previous layer (through
    /// <paramref name="inputActivation"/>'s derivative at x, or at <paramref name="inputPreActivation"/> for a
    /// cosine).
    /// </summary>
    public static void BackwardReference<T>(LayerShape layer, int members, bool inputShared, ReadOnlySpan<T> xRows, ReadOnlySpan<T> parameters,
        ReadOnlySpan<T> preScale, ReadOnlySpan<T> dz, Span<T> gradient, Span<T> inputGradient, int rows, Activation inputActivation,
        ReadOnlySpan<T> inputPreActivation = default)
        where T : IFloatingPointIeee754<T>
    {
        T[] x = xRows.ToArray(), p = parameters.ToArray(), outputGradient = dz.ToArray(), xPre = inputPreActivation.ToArray();
        T Slope(int at) => Activations.DerivativeReference(inputActivation, x[at], xPre.Length > 0 ? xPre[at] : T.Zero);
        int nIn = layer.Inputs, nOut = layer.Outputs, rowMembers = rows * members;
        T XScaled(int rm, int j) => layer.HasInputScale ? x[Row(rm) * nIn + j] * p[layer.InputScale(rm % members) + j] : x[Row(rm) * nIn + j];
        int Row(int rm) => inputShared ? rm / members : rm;
        T ScaledGradient(int rm, int o) => layer.HasOutputScale ? outputGradient[rm * nOut + o] * p[layer.OutputScale(rm % members) + o] : outputGradient[rm * nOut + o];
        bool Counts(int rm, int owner, int stride) => stride == 0 || rm % members == owner;

        int perGroup = layer.InputsPerGroup;
        for (int owner = 0; owner < (layer.WeightStride > 0 ? members : 1); owner++)
            for (int o = 0; o < nOut; o++)
                for (int j = 0; j < perGroup; j++)
                {
                    T sum = T.Zero;
                    for (int rm = 0; rm < rowMembers; rm++)
                        if (Counts(rm, owner, layer.WeightStride))
                            sum += ScaledGradient(rm, o) * XScaled(rm, layer.FirstInput(o) + j);
                    gradient[layer.Weight(owner) + o * perGroup + j] = sum;
                }
        for (int owner = 0; owner < (layer.BiasStride > 0 ? members : 1); owner++)
            for (int o = 0; o < nOut; o++)
            {
                T sum = T.Zero;
                for (int rm = 0; rm < rowMembers; rm++)
                    if (Counts(rm, owner, layer.BiasStride))
                        sum += outputGradient[rm * nOut + o];
                gradient[layer.Bias(owner) + o] = sum;
            }
        if (layer.HasOutputScale)
            for (int i = 0; i < members; i++)
                for (int o = 0; o < nOut; o++)
                {
                    T sum = T.Zero;
                    for (int rm = i; rm < rowMembers; rm += members)
                        sum += outputGradient[rm * nOut + o] * preScale[rm * nOut + o];
                    gradient[layer.OutputScale(i) + o] = sum;
                }

        var g = new T[rowMembers * nIn]; // the gradient at x * r
        for (int rm = 0; rm < rowMembers; rm++)
            for (int j = 0; j < nIn; j++)
            {
                T sum = T.Zero;
                int group = j / perGroup;
                for (int o = group * layer.OutputsPerGroup; o < (group + 1) * layer.OutputsPerGroup; o++)
                    sum += ScaledGradient(rm, o) * p[layer.Weight(rm % members) + o * perGroup + j - group * perGroup];
                g[rm * nIn + j] = sum;
            }
        if (layer.HasInputScale)
            for (int i = 0; i < members; i++)
                for (int j = 0; j < nIn; j++)
                {
                    T sum = T.Zero;
                    for (int rm = i; rm < rowMembers; rm += members)
                        sum += g[rm * nIn + j] * x[Row(rm) * nIn + j];
                    gradient[layer.InputScale(i) + j] = sum;
                }
        if (inputGradient.IsEmpty)
            return;
        T R(int rm, int j) => layer.HasInputScale ? p[layer.InputScale(rm % members) + j] : T.One;
        if (inputShared)
        {
            for (int b = 0; b < rows; b++)
                for (int j = 0; j < nIn; j++)
                {
                    T sum = T.Zero;
                    for (int i = 0; i < members; i++)
                        sum += g[(b * members + i) * nIn + j] * R(b * members + i, j);
                    inputGradient[b * nIn + j] = sum * Slope(b * nIn + j);
                }
            return;
        }
        for (int rm = 0; rm < rowMembers; rm++)
            for (int j = 0; j < nIn; j++)
                inputGradient[rm * nIn + j] = g[rm * nIn + j] * R(rm, j) * Slope(rm * nIn + j);
    }

    // ---- kernels ----
    // The simple ones, one output per work item, are the CPU accelerator's (and grouped layers'); a GPU runs
    // the layer as tiled products (BatchedDenseForward / Backward below; DenseTiled.cs). Both run the three
    // reductions below.

    /// <summary>One output element (rm, o) per work item.</summary>
    public static void SimpleForwardKernel(BatchedLayerArgs a, int blocked)
    {
        int nOut = a.Layer.Outputs;
        var range = WorkRange.OfThread(a.Rows * a.Members * nOut, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            int rm = e / nOut, o = e - rm * nOut;
            float z = PreActivation(a.X.Data, a.X.RowStart(InputRow(rm, a.Members, a.InputShared)), a.Parameters, a.Layer, rm % a.Members, o, out float pre);
            if (a.Layer.HasOutputScale)
                a.PreScale[e] = pre;
            if (a.Layer.KeepsPreActivation)
                a.PreActivation[e] = z;
            a.Y[e] = Activations.Apply(a.Layer.Activation, z);
        }
    }

    private static float ScaledGradient(in BatchedLayerArgs a, int rm, int o) =>
        a.Layer.HasOutputScale ? a.OutputGradient[rm * a.Layer.Outputs + o] * a.Parameters[a.Layer.OutputScale(rm % a.Members) + o] : a.OutputGradient[rm * a.Layer.Outputs + o];

    private static float ScaledInput(in BatchedLayerArgs a, int rm, int j)
    {
        float x = a.X.Data[a.X.RowStart(InputRow(rm, a.Members, a.InputShared)) + j];
        return a.Layer.HasInputScale ? x * a.Parameters[a.Layer.InputScale(rm % a.Members) + j] : x;
    }

    /// <summary>
    /// One parameter gradient per work item, each a sum over row-members in order: the weights (every
    /// member's, or the shared ones), then the biases, then the output scales s.
    /// </summary>
    public static void SimpleParameterGradientKernel(BatchedLayerArgs a, int blocked)
    {
        var layer = a.Layer;
        int nIn = layer.InputsPerGroup, nOut = layer.Outputs, rowMembers = a.Rows * a.Members;
        int weightOwners = layer.WeightStride > 0 ? a.Members : 1, biasOwners = layer.BiasStride > 0 ? a.Members : 1;
        int weights = weightOwners * nOut * nIn, biases = biasOwners * nOut, scales = layer.HasOutputScale ? a.Members * nOut : 0;
        var range = WorkRange.OfThread(weights + biases + scales, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            float sum = 0f;
            if (e < weights)
            {
                int owner = e / (nOut * nIn), oj = e - owner * nOut * nIn, o = oj / nIn, j = oj - o * nIn;
                int first = weightOwners > 1 ? owner : 0, step = weightOwners > 1 ? a.Members : 1;
                int input = layer.FirstInput(o) + j;
                for (int rm = first; rm < rowMembers; rm += step)
                    sum += ScaledGradient(a, rm, o) * ScaledInput(a, rm, input);
                a.Gradients[layer.WeightOffset + e] = sum;
            }
            else
                BiasOrScaleGradient(a, e - weights);
        }
    }

    /// <summary>
    /// Element e of the layer's biases (every member's, or the shared ones) then output scales s: each a sum
    /// over the row-members in order, of dz, or of dz times the sum before s.
    /// </summary>
    private static void BiasOrScaleGradient(in BatchedLayerArgs a, int e)
    {
        var layer = a.Layer;
        int nOut = layer.Outputs, rowMembers = a.Rows * a.Members, biasOwners = layer.BiasStride > 0 ? a.Members : 1, biases = biasOwners * nOut;
        float sum = 0f;
        if (e < biases)
        {
            int owner = e / nOut, o = e - owner * nOut;
            int first = biasOwners > 1 ? owner : 0, step = biasOwners > 1 ? a.Members : 1;
            for (int rm = first; rm < rowMembers; rm += step)
                sum += a.OutputGradient[rm * nOut + o];
            a.Gradients[layer.BiasOffset + e] = sum;
            return;
        }
        int io = e - biases, i = io / nOut, oi = io - i * nOut;
        for (int rm = i; rm < rowMembers; rm += a.Members)
            sum += a.OutputGradient[rm * nOut + oi] * a.PreScale[rm * nOut + oi];
        a.Gradients[layer.OutputScaleOffset + io] = sum;
    }

    /// <summary>
    /// One element (rm, j) of g = dpre W_i per work item: stored in ScaledInputGradient when the layer has r or
    /// its input rows are shared (the kernels after this one read it), else straight to dx = g f'(x).
    /// </summary>
    public static void SimpleScaledInputGradientKernel(BatchedLayerArgs a, int blocked)
    {
        var layer = a.Layer;
        int nIn = layer.Inputs, nOut = layer.Outputs;
        var range = WorkRange.OfThread(a.Rows * a.Members * nIn, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            int rm = e / nIn, j = e - rm * nIn, perGroup = layer.InputsPerGroup, group = j / perGroup;
            int w = layer.Weight(rm % a.Members) + j - group * perGroup;
            float g = 0f;
            for (int o = group * layer.OutputsPerGroup; o < (group + 1) * layer.OutputsPerGroup; o++)
                g += ScaledGradient(a, rm, o) * a.Parameters[w + o * perGroup];
            if (layer.HasInputScale || a.InputShared != 0)
                a.ScaledInputGradient[e] = g;
            else
                a.InputGradient[e] = g * InputSlope(a, rm, j);
        }
    }

    // The lanes kernels: what a GPU runs for the layers its products do not cut (grouped ones, the embeddings).
    // A work item takes four outputs that share their weights (FourLanes: four row-members of one member, or
    // four inputs of one weight row), each summed exactly as the simple kernel sums it (the same terms in the
    // same order: the same bits), with the weight or the dz read once for four and the loops unrolled.

    /// <summary>Y = f(((X r) W^T) s + b): one output o of four row-members of one member a work item.</summary>
    public static void LanesForwardKernel(BatchedLayerArgs a, int blocked)
    {
        var layer = a.Layer;
        int k = a.Members, nOut = layer.Outputs, n = layer.InputsPerGroup, rowMembers = a.Rows * k, lanes = FourLanes.Of(rowMembers, k);
        var range = WorkRange.OfThread(lanes * nOut, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            int o = e / lanes, q = e - o * lanes;
            if (q >= rowMembers)
                continue;
            int i = q % k, first = layer.FirstInput(o);
            long x0 = a.X.RowStart(InputRow(q, k, a.InputShared)) + first, x1 = a.X.RowStart(InputRow(FourLanes.Or(q, 1, lanes, rowMembers), k, a.InputShared)) + first;
            long x2 = a.X.RowStart(InputRow(FourLanes.Or(q, 2, lanes, rowMembers), k, a.InputShared)) + first;
            long x3 = a.X.RowStart(InputRow(FourLanes.Or(q, 3, lanes, rowMembers), k, a.InputShared)) + first;
            float bias = a.Parameters[layer.Bias(i) + o];
            var sums = FourLanes.Dots<GlobalLaneViews>(SumStart(layer, bias, SumOrder.FromBias), a.X.Data, x0, x1, x2, x3, a.Parameters, layer.Weight(i) + (long)o * n,
                layer.HasInputScale ? layer.InputScale(i) + first : -1, n);
            float s = layer.HasOutputScale ? a.Parameters[layer.OutputScale(i) + o] : 1f;
            for (int c = 0; c < 4 && q + c * lanes < rowMembers; c++)
            {
                int at = (q + c * lanes) * nOut + o;
                if (layer.HasOutputScale)
                    a.PreScale[at] = sums[c];
                float z = Epilogue(layer, sums[c], bias, s, SumOrder.FromBias);
                if (layer.KeepsPreActivation)
                    a.PreActivation[at] = z;
                a.Y[at] = Activations.Apply(layer.Activation, z);
            }
        }
    }

    /// <summary>
    /// The parameter gradients: a work item four outputs by four inputs of one group's weights (16 of them,
    /// lanes of the group's outputs and inputs), each the sum over members of s_o r_j times the sum over the
    /// member's rows in order of dz x: a row-member's four dz and four x read once for sixteen; then one bias
    /// or output scale a work item, as the simple kernel does.
    /// </summary>
    public static void LanesParameterGradientKernel(BatchedLayerArgs a, int blocked)
    {
        var layer = a.Layer;
        int k = a.Members, n = layer.InputsPerGroup, perGroup = layer.OutputsPerGroup, nOut = layer.Outputs, rowMembers = a.Rows * k;
        int inputLanes = FourLanes.Of(n, 1), outputLanes = FourLanes.Of(perGroup, 1), tiles = layer.Groups * outputLanes * inputLanes;
        int weightOwners = layer.WeightStride > 0 ? k : 1, biasOwners = layer.BiasStride > 0 ? k : 1;
        int weightItems = weightOwners * tiles, total = weightItems + biasOwners * nOut + (layer.HasOutputScale ? k * nOut : 0);
        var range = WorkRange.OfThread(total, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            if (e >= weightItems)
            {
                BiasOrScaleGradient(a, e - weightItems);
                continue;
            }
            int owner = e / tiles, rest = e - owner * tiles, group = rest / (outputLanes * inputLanes);
            rest -= group * outputLanes * inputLanes;
            int oq = rest / inputLanes, jq = rest - oq * inputLanes;
            int o0 = group * perGroup + oq, o1 = group * perGroup + FourLanes.Or(oq, 1, outputLanes, perGroup);
            int o2 = group * perGroup + FourLanes.Or(oq, 2, outputLanes, perGroup), o3 = group * perGroup + FourLanes.Or(oq, 3, outputLanes, perGroup);
            int j0 = group * n + jq, j1 = group * n + FourLanes.Or(jq, 1, inputLanes, n), j2 = group * n + FourLanes.Or(jq, 2, inputLanes, n), j3 = group * n + FourLanes.Or(jq, 3, inputLanes, n);
            // Member by member (a shared W sums every member's rows, one member after another), each member's
            // rows in order, its input row followed as rm moves (layer 0's rows are shared: rm / k), no division
            // a pass; a member's s_o and r_j multiply its sum once, as the GPU epoch sums. A per-member W without
            // adapters thus takes the simple kernel's very terms in its order: its bits.
            bool shared = a.InputShared != 0;
            int firstMember = weightOwners > 1 ? owner : 0, lastMember = weightOwners > 1 ? owner : k - 1, rowStep = shared ? 1 : k;
            var tile = new WeightTile { O0 = o0, O1 = o1, O2 = o2, O3 = o3, J0 = j0, J1 = j1, J2 = j2, J3 = j3, Outputs = nOut };
            Sums4 t0 = default, t1 = default, t2 = default, t3 = default;
            for (int i = firstMember; i <= lastMember; i++)
            {
                Sums4 s0 = default, s1 = default, s2 = default, s3 = default;
                // The first row-member outside the loop: the tile's indices are then used before it, and ILGPU's
                // code placement cannot sink their computation into every pass.
                int rm = i, row = shared ? 0 : i;
                if (rm < rowMembers)
                    WeightStep(ref s0, ref s1, ref s2, ref s3, a, tile, rm, row);
                for (rm += k, row += rowStep; rm < rowMembers; rm += k, row += rowStep)
                    WeightStep(ref s0, ref s1, ref s2, ref s3, a, tile, rm, row);
                var r = layer.HasInputScale ? Row4(a.Parameters.SubView(layer.InputScale(i)), j0, j1, j2, j3) : new Sums4 { S0 = 1f, S1 = 1f, S2 = 1f, S3 = 1f };
                var sc = layer.HasOutputScale ? Row4(a.Parameters.SubView(layer.OutputScale(i)), o0, o1, o2, o3) : new Sums4 { S0 = 1f, S1 = 1f, S2 = 1f, S3 = 1f };
                AddScaled(ref t0, s0, sc.S0, r);
                AddScaled(ref t1, s1, sc.S1, r);
                AddScaled(ref t2, s2, sc.S2, r);
                AddScaled(ref t3, s3, sc.S3, r);
            }
            long w = layer.Weight(owner) - (long)group * n;
            for (int c = 0; c < 4 && oq + c * outputLanes < perGroup; c++)
            {
                var sums = c == 0 ? t0 : c == 1 ? t1 : c == 2 ? t2 : t3;
                long at = w + (long)(group * perGroup + oq + c * outputLanes) * n + group * n + jq;
                for (int q = 0; q < 4 && jq + q * inputLanes < n; q++)
                    a.Gradients[at + q * inputLanes] = sums[q];
            }
        }
    }

    /// <summary>One output's terms of a 4 x 4 input-gradient tile: four dz (times s) by four weights, in the simple kernel's order.</summary>
    private static void TransposedStep(ref Sums4 g0, ref Sums4 g1, ref Sums4 g2, ref Sums4 g3, ArrayView<float> d0, ArrayView<float> d1, ArrayView<float> d2,
        ArrayView<float> d3, ArrayView<float> w0, ArrayView<float> w1, ArrayView<float> w2, ArrayView<float> w3, ArrayView<float> scales, int scaled, int o, int wo)
    {
        var d = new Sums4 { S0 = d0[o], S1 = d1[o], S2 = d2[o], S3 = d3[o] };
        if (scaled != 0)
        {
            float s = scales[o];
            d = new Sums4 { S0 = d.S0 * s, S1 = d.S1 * s, S2 = d.S2 * s, S3 = d.S3 * s };
        }
        var weights = new Sums4 { S0 = w0[wo], S1 = w1[wo], S2 = w2[wo], S3 = w3[wo] };
        AddOuter(ref g0, d.S0, weights);
        AddOuter(ref g1, d.S1, weights);
        AddOuter(ref g2, d.S2, weights);
        AddOuter(ref g3, d.S3, weights);
    }

    /// <summary>A 4 x 4 tile of a layer's weight gradient: its outputs and inputs, and where the adapters are (-1: none).</summary>
    private struct WeightTile
    {
        public long O0, O1, O2, O3, J0, J1, J2, J3; // 64-bit: a load's address is then its row's plus a constant
        public int Outputs;
    }

    /// <summary>Row-member rm's terms of a weight-gradient tile: four dz by four x (dz on the left, the simple kernel's order).</summary>
    private static void WeightStep(ref Sums4 s0, ref Sums4 s1, ref Sums4 s2, ref Sums4 s3, in BatchedLayerArgs a, in WeightTile t, int rm, int row)
    {
        var d = Row4(a.OutputGradient.SubView((long)rm * t.Outputs), t.O0, t.O1, t.O2, t.O3);
        var x = Row4(a.X.Data.SubView(a.X.RowStart(row)), t.J0, t.J1, t.J2, t.J3);
        AddOuter(ref s0, d.S0, x);
        AddOuter(ref s1, d.S1, x);
        AddOuter(ref s2, d.S2, x);
        AddOuter(ref s3, d.S3, x);
    }

    /// <summary>total_q += (sum_q s) r_q: a member's sums through its output scale s and input scales r.</summary>
    private static void AddScaled(ref Sums4 total, in Sums4 sum, float s, in Sums4 r)
    {
        total.S0 += sum.S0 * s * r.S0;
        total.S1 += sum.S1 * s * r.S1;
        total.S2 += sum.S2 * s * r.S2;
        total.S3 += sum.S3 * s * r.S3;
    }

    /// <summary>Elements c_0..c_3 of a view.</summary>
    private static Sums4 Row4(ArrayView<float> v, long c0, long c1, long c2, long c3) => new() { S0 = v[c0], S1 = v[c1], S2 = v[c2], S3 = v[c3] };


    /// <summary>sums_q += d x_q for the four q (d on the left: the simple kernels' order).</summary>
    private static void AddOuter(ref Sums4 sums, float d, in Sums4 x)
    {
        sums.S0 += d * x.S0;
        sums.S1 += d * x.S1;
        sums.S2 += d * x.S2;
        sums.S3 += d * x.S3;
    }

    /// <summary>
    /// g = (dz s) W_i at the layer's input: a work item four inputs of one group by four row-members of one
    /// member (16 of them), each summed over the group's outputs in order: per output four dz s and four
    /// weights read once for sixteen; then stored as the simple kernel stores it.
    /// </summary>
    public static void LanesScaledInputGradientKernel(BatchedLayerArgs a, int blocked)
    {
        var layer = a.Layer;
        int k = a.Members, nIn = layer.Inputs, nOut = layer.Outputs, n = layer.InputsPerGroup, rowMembers = a.Rows * k;
        int lanes = FourLanes.Of(rowMembers, k), inputLanes = FourLanes.Of(n, 1), perGroupItems = inputLanes * lanes;
        var range = WorkRange.OfThread(layer.Groups * perGroupItems, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            int group = e / perGroupItems, rest = e - group * perGroupItems, jq = rest / lanes, q = rest - jq * lanes;
            if (q >= rowMembers)
                continue;
            int i = q % k, first = group * layer.OutputsPerGroup, end = first + layer.OutputsPerGroup;
            int c1 = FourLanes.Or(jq, 1, inputLanes, n), c2 = FourLanes.Or(jq, 2, inputLanes, n), c3 = FourLanes.Or(jq, 3, inputLanes, n);
            long r0 = (long)q * nOut, r1 = (long)FourLanes.Or(q, 1, lanes, rowMembers) * nOut;
            long r2 = (long)FourLanes.Or(q, 2, lanes, rowMembers) * nOut, r3 = (long)FourLanes.Or(q, 3, lanes, rowMembers) * nOut;
            // Views taken once, read at an index that steps (a view per step would cost its 64-bit address each step).
            ArrayView<float> d0 = a.OutputGradient.SubView(r0), d1 = a.OutputGradient.SubView(r1), d2 = a.OutputGradient.SubView(r2), d3 = a.OutputGradient.SubView(r3);
            ArrayView<float> w0 = a.Parameters.SubView(layer.Weight(i) + jq), w1 = a.Parameters.SubView(layer.Weight(i) + c1);
            ArrayView<float> w2 = a.Parameters.SubView(layer.Weight(i) + c2), w3 = a.Parameters.SubView(layer.Weight(i) + c3);
            var scales = a.Parameters.SubView(layer.HasOutputScale ? layer.OutputScale(i) : 0);
            Sums4 g0 = default, g1 = default, g2 = default, g3 = default; // g_r: row-member lane r's four inputs
            // The first output outside the loop: the item's indices are then used before it, and ILGPU's code
            // placement cannot sink their computation (divisions among them) into every pass.
            int scaled = layer.HasOutputScale ? 1 : 0;
            if (first < end) // always (a group has outputs), but it puts the loop's bound before the loop too
                TransposedStep(ref g0, ref g1, ref g2, ref g3, d0, d1, d2, d3, w0, w1, w2, w3, scales, scaled, first, first * n);
            for (int o = first + 1, wo = o * n; o < end; o++, wo += n)
                TransposedStep(ref g0, ref g1, ref g2, ref g3, d0, d1, d2, d3, w0, w1, w2, w3, scales, scaled, o, wo);
            for (int r = 0; r < 4 && q + r * lanes < rowMembers; r++)
            {
                int rm = q + r * lanes;
                var g = r == 0 ? g0 : r == 1 ? g1 : r == 2 ? g2 : g3;
                for (int c = 0; c < 4 && jq + c * inputLanes < n; c++)
                {
                    int j = group * n + jq + c * inputLanes, at = rm * nIn + j;
                    if (layer.HasInputScale || a.InputShared != 0)
                        a.ScaledInputGradient[at] = g[c];
                    else
                        a.InputGradient[at] = g[c] * InputSlope(a, rm, j);
                }
            }
        }
    }

    // The three reductions that are not products (dr, ds, layer 0's sum over members) sum eight neighbouring
    // columns a work item (ColumnWindow) through cursors that step a row at a time (RowCursor): a row's terms
    // are then two 16-byte loads (or eight scalar ones from one address) per operand and eight multiply-adds,
    // not two loads and an address per multiply-add. Each column's terms are still added in row (or member)
    // order: the bits of one column at a time.

    /// <summary>
    /// Input scale gradients, the sums over each member's rows of g x, eight j a work item. Shared input rows
    /// (layer 0): four members a work item, a row a pass: their g are neighbouring rows and their x one row,
    /// looked up once (gathered rows) for all four; past the last member the loads repeat it and the stores
    /// stop. A row-member's own input rows (in place, as g's): one member a work item, four rows a pass, x and
    /// g stepping a row of k on together. A window narrower than eight sums one member a row at a time.
    /// </summary>
    public static void InputScaleGradientKernel<TLoads>(BatchedLayerArgs a, int blocked) where TLoads : struct, IProductLoads
    {
        int nIn = a.Layer.Inputs, k = a.Members, windows = ColumnWindow.Count(nIn);
        bool shared = a.InputShared != 0;
        int perItem = shared ? 4 : 1;
        long gStep = (long)k * nIn, gUnits = RowCursor<TLoads>.Units(gStep);
        var range = WorkRange.OfThread((k + perItem - 1) / perItem * windows, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            int item = e / windows, i = perItem * item;
            var w = ColumnWindow.Of(e - item * windows, nIn);
            // Members i + m1..m3 of shared rows: the next three, clamped to the last (i itself for one a work item).
            int last = shared ? k - 1 - i : 0, m1 = Math.Min(1, last), m2 = Math.Min(2, last), m3 = Math.Min(3, last);
            Float8 s0 = default, s1 = default, s2 = default, s3 = default;
            long at = (long)i * nIn + w.First;
            if (!w.Wide)
            {
                s0 = NarrowInputScaleSum<TLoads>(a, w, i);
                s1 = NarrowInputScaleSum<TLoads>(a, w, i + m1);
                s2 = NarrowInputScaleSum<TLoads>(a, w, i + m2);
                s3 = NarrowInputScaleSum<TLoads>(a, w, i + m3);
            }
            else if (shared)
            {
                long g1 = RowCursor<TLoads>.Units((long)m1 * nIn), g2 = RowCursor<TLoads>.Units((long)(m2 - m1) * nIn), g3 = RowCursor<TLoads>.Units((long)(m3 - m2) * nIn);
                for (int b = 0; b < a.Rows; b++, at += gStep)
                {
                    var x = RowCursor<TLoads>.At(a.X.Data, (long)a.X.RowStart(b) + w.First).Load();
                    var g = RowCursor<TLoads>.At(a.ScaledInputGradient, at);
                    s0 = Float8.Fma(s0, g.Load(), x);
                    g = g.Next(g1);
                    s1 = Float8.Fma(s1, g.Load(), x);
                    g = g.Next(g2);
                    s2 = Float8.Fma(s2, g.Load(), x);
                    g = g.Next(g3);
                    s3 = Float8.Fma(s3, g.Load(), x);
                }
            }
            else
            {
                // x's rows in place: row rm at (Offset + rm) Cols, Cols = nIn: from Offset on, where g's row rm is.
                var xRows = RowCursor<TLoads>.At(a.X.Data, a.X.RowStart(0));
                int b = 0;
                for (; b + 4 <= a.Rows; b += 4, at += 4 * gStep)
                {
                    RowCursor<TLoads> g = RowCursor<TLoads>.At(a.ScaledInputGradient, at), x = xRows.Next(RowCursor<TLoads>.Units(at));
                    s0 = Float8.Fma(s0, g.Load(), x.Load());
                    (g, x) = (g.Next(gUnits), x.Next(gUnits));
                    s0 = Float8.Fma(s0, g.Load(), x.Load());
                    (g, x) = (g.Next(gUnits), x.Next(gUnits));
                    s0 = Float8.Fma(s0, g.Load(), x.Load());
                    (g, x) = (g.Next(gUnits), x.Next(gUnits));
                    s0 = Float8.Fma(s0, g.Load(), x.Load());
                }
                for (; b < a.Rows; b++, at += gStep)
                    s0 = Float8.Fma(s0, RowCursor<TLoads>.At(a.ScaledInputGradient, at).Load(), xRows.Next(RowCursor<TLoads>.Units(at)).Load());
            }
            w.Store(a.Gradients, a.Layer.InputScale(i) + w.First, s0);
            if (m1 > 0)
                w.Store(a.Gradients, a.Layer.InputScale(i + m1) + w.First, s1);
            if (m2 > m1)
                w.Store(a.Gradients, a.Layer.InputScale(i + m2) + w.First, s2);
            if (m3 > m2)
                w.Store(a.Gradients, a.Layer.InputScale(i + m3) + w.First, s3);
        }
    }

    /// <summary>Member i's sum of g x over its rows for a window narrower than eight (loads clamped), in row order.</summary>
    private static Float8 NarrowInputScaleSum<TLoads>(in BatchedLayerArgs a, in ColumnWindow w, int i) where TLoads : struct, IProductLoads
    {
        int nIn = a.Layer.Inputs, k = a.Members, xRowStep = a.InputShared != 0 ? 1 : k, xRow = a.InputShared != 0 ? 0 : i;
        var sum = default(Float8);
        long at = (long)i * nIn + w.First;
        for (int b = 0; b < a.Rows; b++, at += (long)k * nIn, xRow += xRowStep)
            sum = Float8.Fma(sum, RowCursor<TLoads>.At(a.ScaledInputGradient, at).LoadClamped(w),
                RowCursor<TLoads>.At(a.X.Data, (long)a.X.RowStart(xRow) + w.First).LoadClamped(w));
        return sum;
    }

    /// <summary>One output scale's gradients (i, eight o) per work item: the sums over member i's rows of dL/dz times the sum before s, four rows a pass, in row order.</summary>
    public static void OutputScaleGradientKernel<TLoads>(BatchedLayerArgs a, int blocked) where TLoads : struct, IProductLoads
    {
        int nOut = a.Layer.Outputs, k = a.Members, windows = ColumnWindow.Count(nOut);
        long step = (long)k * nOut, units = RowCursor<TLoads>.Units(step);
        var range = WorkRange.OfThread(k * windows, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            int i = e / windows, b = 0;
            var w = ColumnWindow.Of(e - i * windows, nOut);
            long at = (long)i * nOut + w.First;
            var sum = default(Float8);
            for (; w.Wide && b + 4 <= a.Rows; b += 4, at += 4 * step)
            {
                RowCursor<TLoads> d = RowCursor<TLoads>.At(a.OutputGradient, at), p = RowCursor<TLoads>.At(a.PreScale, at);
                sum = Float8.Fma(sum, d.Load(), p.Load());
                (d, p) = (d.Next(units), p.Next(units));
                sum = Float8.Fma(sum, d.Load(), p.Load());
                (d, p) = (d.Next(units), p.Next(units));
                sum = Float8.Fma(sum, d.Load(), p.Load());
                (d, p) = (d.Next(units), p.Next(units));
                sum = Float8.Fma(sum, d.Load(), p.Load());
            }
            for (; b < a.Rows; b++, at += step)
                sum = Float8.Fma(sum, RowCursor<TLoads>.At(a.OutputGradient, at).LoadClamped(w), RowCursor<TLoads>.At(a.PreScale, at).LoadClamped(w));
            w.Store(a.Gradients, a.Layer.OutputScale(i) + w.First, sum);
        }
    }

    /// <summary>
    /// Eight elements of dx per work item from the stored g: dx[rm] = g r_i f'(x) per row-member, or, for shared
    /// input rows, dx[b] = sum_i g[b k + i] r_i f'(x) (the inputs' gradient, for explanations), members in order,
    /// four a pass.
    /// </summary>
    public static void InputGradientKernel<TLoads>(BatchedLayerArgs a, int blocked) where TLoads : struct, IProductLoads
    {
        var layer = a.Layer;
        int nIn = layer.Inputs, k = a.Members, windows = ColumnWindow.Count(nIn);
        int rows = a.InputShared != 0 ? a.Rows : a.Rows * k, perRow = a.InputShared != 0 ? k : 1;
        long units = RowCursor<TLoads>.Units(nIn);
        var range = WorkRange.OfThread(rows * windows, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            int row = e / windows, m = 0;
            var w = ColumnWindow.Of(e - row * windows, nIn);
            long g = (long)row * perRow * nIn + w.First;
            var sum = default(Float8);
            if (layer.HasInputScale)
            {
                // Row-member row perRow + m has member m with shared rows (perRow = k), else its row mod k alone.
                long r = layer.InputScale(row * perRow % k) + w.First;
                for (; w.Wide && m + 4 <= perRow; m += 4, g += 4 * nIn, r += 4 * nIn)
                {
                    RowCursor<TLoads> gm = RowCursor<TLoads>.At(a.ScaledInputGradient, g), rm = RowCursor<TLoads>.At(a.Parameters, r);
                    sum = Float8.Fma(sum, gm.Load(), rm.Load());
                    (gm, rm) = (gm.Next(units), rm.Next(units));
                    sum = Float8.Fma(sum, gm.Load(), rm.Load());
                    (gm, rm) = (gm.Next(units), rm.Next(units));
                    sum = Float8.Fma(sum, gm.Load(), rm.Load());
                    (gm, rm) = (gm.Next(units), rm.Next(units));
                    sum = Float8.Fma(sum, gm.Load(), rm.Load());
                }
                for (; m < perRow; m++, g += nIn, r += nIn)
                    sum = Float8.Fma(sum, RowCursor<TLoads>.At(a.ScaledInputGradient, g).LoadClamped(w), RowCursor<TLoads>.At(a.Parameters, r).LoadClamped(w));
            }
            else
            {
                for (; m < perRow; m++, g += nIn)
                    sum = Float8.Add(sum, RowCursor<TLoads>.At(a.ScaledInputGradient, g).LoadClamped(w));
            }
            int j = w.First;
            w.Store(a.InputGradient, (long)row * nIn + j, new Float8(
                new Float4(sum.Lo.X * InputSlope(a, row, j), sum.Lo.Y * InputSlope(a, row, j + w.Clamped(1)),
                    sum.Lo.Z * InputSlope(a, row, j + w.Clamped(2)), sum.Lo.W * InputSlope(a, row, j + w.Clamped(3))),
                new Float4(sum.Hi.X * InputSlope(a, row, j + w.Clamped(4)), sum.Hi.Y * InputSlope(a, row, j + w.Clamped(5)),
                    sum.Hi.Z * InputSlope(a, row, j + w.Clamped(6)), sum.Hi.W * InputSlope(a, row, j + w.Clamped(7)))));
        }
    }

    /// <summary>One of the three reductions above, by name, with 16-byte or scalar loads.</summary>
    public static System.Reflection.MethodInfo ReductionKernelFor(string name, bool vector) =>
        typeof(BatchedDense).GetMethod(name)!.MakeGenericMethod(vector ? typeof(VectorLoads) : typeof(ScalarLoads));

    /// <summary>The slope of the activation that produced input (row, j): from the input, or for a cosine from its stored pre-activation.</summary>
    private static float InputSlope(in BatchedLayerArgs a, int row, int j) =>
        Activations.Derivative(a.InputActivation, a.X.Data[a.X.RowStart(row) + j],
            a.InputActivation == (int)Activation.Cos ? a.InputPreActivation[row * a.Layer.Inputs + j] : 0f);
}

public sealed partial class ComputeDevice
{
    private Action<KernelConfig, BatchedLayerArgs, int>? batchedForward, batchedParameterGradient, batchedScaledInputGradient;
    private Action<KernelConfig, BatchedLayerArgs, int>? lanesForward, lanesParameterGradient, lanesScaledInputGradient;
    private readonly Dictionary<(string, bool), Action<KernelConfig, BatchedLayerArgs, int>> batchedReductions = [];

    /// <summary>
    /// One of the three reductions (a kernel of BatchedDense by name) over <paramref name="rows"/> rows of
    /// <paramref name="cols"/> columns, eight a work item; 16-byte loads where the columns and every operand it
    /// reads allow them.
    /// </summary>
    private void BatchedReduction(string kernel, in BatchedLayerArgs a, int rows, int cols, ArrayView<float> first, ArrayView<float> second, int secondOffset = 0)
    {
        bool vector = cols % 4 == 0 && cols >= ColumnWindow.Width && IsVectorAligned(first) && IsVectorAligned(second) && secondOffset % 4 == 0;
        if (!batchedReductions.TryGetValue((kernel, vector), out var launch))
            batchedReductions[(kernel, vector)] = launch = LoadKernel<BatchedLayerArgs, int>(
                BatchedDense.ReductionKernelFor(kernel, vector).CreateDelegate<Action<BatchedLayerArgs, int>>());
        var shape = Plan.ShapeFor(rows * ColumnWindow.Count(cols));
        launch(shape.Config, a, shape.BlockedFlag);
    }

    private void InputScaleGradient(in BatchedLayerArgs a) =>
        BatchedReduction(nameof(BatchedDense.InputScaleGradientKernel), a, a.InputShared != 0 ? (a.Members + 3) / 4 : a.Members, a.Layer.Inputs, a.ScaledInputGradient, a.X.Data);

    private void OutputScaleGradient(in BatchedLayerArgs a) =>
        BatchedReduction(nameof(BatchedDense.OutputScaleGradientKernel), a, a.Members, a.Layer.Outputs, a.OutputGradient, a.PreScale);

    private void BatchedInputGradient(in BatchedLayerArgs a) =>
        BatchedReduction(nameof(BatchedDense.InputGradientKernel), a, (a.InputShared != 0 ? 1 : a.Members) * a.Rows, a.Layer.Inputs,
            a.ScaledInputGradient, a.Parameters, a.Layer.HasInputScale ? a.Layer.InputScaleOffset : 0);

    // ---- the layer as tiled products (a GPU's; DenseTiled.cs) ----

    /// <summary>The layer's parameters from <paramref name="offset"/> on, as rows of <paramref name="cols"/>.</summary>
    private static RowSource ParameterRows(in BatchedLayerArgs a, int offset, int cols) => RowSource.InPlace(a.Parameters.SubView(offset), cols);

    /// <summary>
    /// The products' common frame: members and slabs (one per member where the weights are the member's own,
    /// their rows b k + i; else one slab over all row-members, member rm mod k).
    /// </summary>
    private static ProductArgs BatchedProduct(in BatchedLayerArgs a, bool perMember) => new()
    {
        Members = a.Members, Slabs = perMember ? a.Members : 1,
    };

    /// <summary>The layer's input as an operand: row-members, or layer 0's input rows shared by them; times r where the layer has it.</summary>
    private static ProductOperand BatchedInput(in BatchedLayerArgs a) => new()
    {
        Rows = a.X, RowMembers = a.InputShared != 0 ? 2 : 1,
        ScaleStride = a.Layer.HasInputScale ? a.Layer.Inputs : 0,
        Scales = a.Layer.HasInputScale ? a.Parameters.SubView(a.Layer.InputScaleOffset) : default,
    };

    /// <summary>dL/dz as an operand, its rows row-members (or all rows, <paramref name="rowMembers"/> false); times s where the layer has it and <paramref name="scaled"/>.</summary>
    private static ProductOperand BatchedOutputGradient(in BatchedLayerArgs a, bool rowMembers, bool scaled) => new()
    {
        Rows = RowSource.InPlace(a.OutputGradient, a.Layer.Outputs), RowMembers = rowMembers ? 1 : 0,
        ScaleStride = scaled && a.Layer.HasOutputScale ? a.Layer.Outputs : 0,
        Scales = scaled && a.Layer.HasOutputScale ? a.Parameters.SubView(a.Layer.OutputScaleOffset) : default,
    };


    /// <summary>Y = f(((X r) W^T) s + b): one product over the row-members (shared W) or one per member (its own W), r as the input is loaded, s, b and f in the epilogue.</summary>
    private void BatchedForwardProducts(in BatchedLayerArgs a)
    {
        var layer = a.Layer;
        var p = BatchedProduct(a, layer.WeightStride > 0);
        p.A = BatchedInput(a);
        p.B = new ProductOperand { Rows = ParameterRows(a, layer.WeightOffset, layer.Inputs), SlabStride = layer.WeightStride };
        p.M = p.Slabs > 1 ? a.Rows : a.Rows * a.Members;
        p.N = layer.Outputs;
        p.K = layer.Inputs;
        p.C = a.Y;
        p.CRowMembers = 1;
        p.HasBias = 1;
        p.Bias = a.Parameters.SubView(layer.BiasOffset);
        p.BiasStride = layer.BiasStride;
        if (layer.HasOutputScale)
        {
            p.HasOutputScale = 1;
            p.OutputScale = a.Parameters.SubView(layer.OutputScaleOffset);
            p.OutputScaleStride = layer.Outputs;
            p.PreScale = a.PreScale;
        }
        p.KeepsPreActivation = layer.KeepsPreActivation ? 1 : 0;
        p.PreActivation = a.PreActivation;
        p.Activation = layer.Activation;
        TiledProduct(p, aKAlongRows: true, bKAlongRows: true);
    }

    /// <summary>
    /// dW = (dZ s)^T (X r) and db = dZ^T 1 as products over the row-members (shared) or each member's rows (its
    /// own); then g = (dZ s) W, stored where r or shared input rows need it, else straight into dx = g f'(x)
    /// (with r and per-member rows, dx = g r f'(x) from the same epilogue, g kept).
    /// </summary>
    private void BatchedBackwardProducts(in BatchedLayerArgs a, bool withInputGradient)
    {
        var layer = a.Layer;
        bool perMemberWeights = layer.WeightStride > 0;
        var w = BatchedProduct(a, perMemberWeights);
        w.A = BatchedOutputGradient(a, rowMembers: true, scaled: true);
        w.B = BatchedInput(a);
        w.M = layer.Outputs;
        w.N = layer.Inputs;
        w.K = perMemberWeights ? a.Rows : a.Rows * a.Members;
        w.C = a.Gradients.SubView(layer.WeightOffset);
        w.CSlabStride = layer.WeightStride;
        TiledProduct(w, aKAlongRows: false, bKAlongRows: false);

        bool perMemberBias = layer.BiasStride > 0;
        var b = BatchedProduct(a, perMemberBias);
        b.A = BatchedOutputGradient(a, rowMembers: perMemberBias, scaled: false);
        b.B = ProductOperand.Of(RowSource.InPlace(Ones(a.Rows * a.Members), 1));
        b.M = layer.Outputs;
        b.N = 1;
        b.K = perMemberBias ? a.Rows : a.Rows * a.Members;
        b.C = a.Gradients.SubView(layer.BiasOffset);
        b.CSlabStride = layer.BiasStride;
        TiledProduct(b, aKAlongRows: false, bKAlongRows: false);

        if (layer.HasOutputScale)
            OutputScaleGradient(a);
        bool stored = layer.HasInputScale || a.InputShared != 0;
        if (!layer.HasInputScale && !withInputGradient)
            return;
        var g = BatchedProduct(a, perMemberWeights);
        g.A = BatchedOutputGradient(a, rowMembers: true, scaled: true);
        g.B = new ProductOperand { Rows = ParameterRows(a, layer.WeightOffset, layer.Inputs), SlabStride = layer.WeightStride };
        g.M = perMemberWeights ? a.Rows : a.Rows * a.Members;
        g.N = layer.Inputs;
        g.K = layer.Outputs;
        g.CRowMembers = 1;
        bool inputGradientHere = withInputGradient && a.InputShared == 0;
        if (inputGradientHere)
        {
            g.C = a.InputGradient;
            g.HasDerivative = 1;
            g.Derivative = a.X;
            g.DerivativeActivation = a.InputActivation;
            g.DerivativePre = a.InputPreActivation;
            if (layer.HasInputScale)
            {
                // The epilogue keeps g (for dr) and goes on to dx = g r f'(x).
                g.HasOutputScale = 1;
                g.OutputScale = a.Parameters.SubView(layer.InputScaleOffset);
                g.OutputScaleStride = layer.Inputs;
                g.PreScale = a.ScaledInputGradient;
            }
        }
        else
        {
            g.C = a.ScaledInputGradient;
        }
        TiledProduct(g, aKAlongRows: true, bKAlongRows: false);
        if (layer.HasInputScale)
            InputScaleGradient(a);
        if (withInputGradient && stored && !inputGradientHere)
            BatchedInputGradient(a);
    }

    private static void CheckBatched(in BatchedLayerArgs a, string what)
    {
        var layer = a.Layer;
        Require(a.Members >= 1 && a.Rows >= 0, $"{what}: members must be at least 1");
        a.X.Check(a.InputShared != 0 ? a.Rows : a.Rows * a.Members, $"{what} x");
        Require(a.X.Cols == layer.Inputs, $"{what}: x must have the layer's {layer.Inputs} columns");
        Require(a.X.Gathered == 0 || a.InputShared != 0, $"{what}: gathered input rows must be shared by the members (layer 0's)");
        Require(layer.Groups >= 1 && layer.Inputs % layer.Groups == 0 && layer.Outputs % layer.Groups == 0, $"{what}: the groups must divide the widths");
        long weights = (layer.WeightStride > 0 ? (long)a.Members : 1) * layer.Outputs * layer.InputsPerGroup;
        Require(layer.WeightOffset >= 0 && layer.WeightOffset + weights <= a.Parameters.Length
            && layer.BiasOffset + (layer.BiasStride > 0 ? (long)a.Members : 1) * layer.Outputs <= a.Parameters.Length
            && (!layer.HasInputScale || layer.InputScaleOffset + (long)a.Members * layer.Inputs <= a.Parameters.Length)
            && (!layer.HasOutputScale || layer.OutputScaleOffset + (long)a.Members * layer.Outputs <= a.Parameters.Length),
            $"{what}: the layer's tensors lie outside the parameters");
        Require(!layer.HasOutputScale || a.PreScale.Length >= (long)a.Rows * a.Members * layer.Outputs, $"{what}: pre-scale sums must hold (rows k, out)");
        Require(!layer.KeepsPreActivation || a.PreActivation.Length >= (long)a.Rows * a.Members * layer.Outputs, $"{what}: pre-activations must hold (rows k, out)");
        Require(a.InputActivation != (int)Activation.Cos || (a.InputShared == 0 && a.InputPreActivation.Length >= (long)a.Rows * a.Members * layer.Inputs),
            $"{what}: a cosine input needs its pre-activations (rows k, in)");
    }

    /// <summary>Y = f(((X r) W^T) s + b) for every row-member, PreScale kept where the layer has s.</summary>
    public void BatchedDenseForward(in BatchedLayerArgs a)
    {
        CheckBatched(a, "batched dense forward");
        Require(a.Y.Length >= (long)a.Rows * a.Members * a.Layer.Outputs, "batched dense forward: y must hold (rows k, out)");
        var layer = a.Layer;
        int slabRows = layer.WeightStride > 0 ? a.Rows : a.Rows * a.Members;
        var variant = Plan.LayerVariantFor(layer.Groups, slabRows, layer.Outputs, layer.InputsPerGroup);
        if (variant == DenseVariant.Tiled)
        {
            BatchedForwardProducts(a);
            return;
        }
        var shape = Plan.ShapeFor(a.Rows * a.Members * a.Layer.Outputs);
        if (variant == DenseVariant.Lanes)
            (lanesForward ??= LoadKernel<BatchedLayerArgs, int>(BatchedDense.LanesForwardKernel))(shape.Config, a, shape.BlockedFlag);
        else
            (batchedForward ??= LoadKernel<BatchedLayerArgs, int>(BatchedDense.SimpleForwardKernel))(shape.Config, a, shape.BlockedFlag);
    }

    /// <summary>The layer's parameter gradients (W, b, s, r), then, unless <paramref name="withInputGradient"/> is false, dL/dz of its input.</summary>
    public void BatchedDenseBackward(in BatchedLayerArgs a, bool withInputGradient)
    {
        CheckBatched(a, "batched dense backward");
        var layer = a.Layer;
        int rowMembers = a.Rows * a.Members;
        Require(a.OutputGradient.Length >= (long)rowMembers * layer.Outputs, "batched dense backward: output gradient must hold (rows k, out)");
        Require(a.Gradients.Length == a.Parameters.Length, "batched dense backward: gradients must match the parameters");
        // Every buffer checked before anything is launched (both routes below read them).
        bool stored = layer.HasInputScale || a.InputShared != 0;
        Require(!(stored && (layer.HasInputScale || withInputGradient)) || a.ScaledInputGradient.Length >= (long)rowMembers * layer.Inputs,
            "batched dense backward: scaled-input gradient must hold (rows k, in)");
        Require(!withInputGradient || a.InputGradient.Length >= (long)(a.InputShared != 0 ? a.Rows : rowMembers) * layer.Inputs,
            "batched dense backward: input gradient must hold its rows");
        var variant = Plan.LayerVariantFor(layer.Groups, layer.Outputs, layer.InputsPerGroup, layer.WeightStride > 0 ? a.Rows : rowMembers);
        if (variant == DenseVariant.Tiled)
        {
            BatchedBackwardProducts(a, withInputGradient);
            return;
        }
        bool lanes = variant == DenseVariant.Lanes;
        int parameterItems = (layer.WeightStride > 0 ? a.Members : 1) * layer.Outputs * layer.InputsPerGroup
            + (layer.BiasStride > 0 ? a.Members : 1) * layer.Outputs + (layer.HasOutputScale ? a.Members * layer.Outputs : 0);
        var shape = Plan.ShapeFor(parameterItems);
        (lanes ? lanesParameterGradient ??= LoadKernel<BatchedLayerArgs, int>(BatchedDense.LanesParameterGradientKernel)
            : batchedParameterGradient ??= LoadKernel<BatchedLayerArgs, int>(BatchedDense.SimpleParameterGradientKernel))(shape.Config, a, shape.BlockedFlag);
        if (!layer.HasInputScale && !withInputGradient)
            return;
        shape = Plan.ShapeFor(rowMembers * layer.Inputs);
        (lanes ? lanesScaledInputGradient ??= LoadKernel<BatchedLayerArgs, int>(BatchedDense.LanesScaledInputGradientKernel)
            : batchedScaledInputGradient ??= LoadKernel<BatchedLayerArgs, int>(BatchedDense.SimpleScaledInputGradientKernel))(shape.Config, a, shape.BlockedFlag);
        if (layer.HasInputScale)
            InputScaleGradient(a);
        if (withInputGradient && stored)
            BatchedInputGradient(a);
    }
}
