// Four-way work items: the lanes kernels (BatchedDenseLanes.cs) and the GPU epoch's passes take four outputs
// that share their weights a work item.
using ILGPU;

namespace HitGpu.Kernels;

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

/// <summary>
/// Four-way work items over n things (row-members, inputs): item q takes q, q + lanes, q + 2 lanes, q + 3 lanes
/// (those below n). Neighbouring threads take neighbouring things; lanes is a multiple of the members, so an
/// item's row-members are one member's (one weight row, one r, one s for the four). The GPU epoch's passes and
/// the lanes kernels below, written once.
/// </summary>
public static class FourLanes
{
    public static int Of(int n, int members) => ((n + 3) / 4 + members - 1) / members * members;

    /// <summary>Thing q + c lanes of an item, or q where that passes n (read, not written: its result is dropped).</summary>
    public static int Or(int q, int c, int lanes, int n) => q + c * lanes < n ? q + c * lanes : q;

    /// <summary>sums_c += v_c[at_c] f for the four c (the shared factor on the right: each product's operands in the references' order).</summary>
    public static void Term(ref Sums4 sums, ArrayView<float> v0, ArrayView<float> v1, ArrayView<float> v2, ArrayView<float> v3, long at0, long at1,
        long at2, long at3, float f)
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
    public static Sums4 Transposed(ArrayView<float> v, long d0, long d1, long d2, long d3, ArrayView<float> p, long at, int stride, long scales,
        int first, int end)
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
