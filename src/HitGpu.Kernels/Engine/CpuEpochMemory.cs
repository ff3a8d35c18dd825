// How the CPU epoch reaches its buffers: raw host addresses into CPU-accelerator memory, taken on the host
// before the launch (a view access costs ~2 ns there, a pointer access ~0.3 ns), and the dot and axpy loops
// its row passes are made of. CPU accelerator only: GPU memory has no host address.
using ILGPU.Runtime;

namespace HitGpu.Kernels;

/// <summary>Four sums, one per row of a group of four.</summary>
public struct Sums4
{
    public float S0, S1, S2, S3;

    public readonly float this[int q] => q == 0 ? S0 : q == 1 ? S1 : q == 2 ? S2 : S3;

    public void Set(int q, float value)
    {
        if (q == 0) S0 = value;
        else if (q == 1) S1 = value;
        else if (q == 2) S2 = value;
        else S3 = value;
    }
}

/// <summary>
/// The buffers the CPU epoch's row passes read and write, as host addresses: the network's inputs, the flat
/// parameters, this launch's scratch rows, the layer shapes and (training only; 0 otherwise) the per-thread
/// gradient copies.
/// </summary>
public readonly unsafe struct RowMemory
{
    public readonly long Features, Parameters, Scratch, Layers, Gradients;

    public RowMemory(long features, long parameters, long scratch, long layers, long gradients)
    {
        Features = features;
        Parameters = parameters;
        Scratch = scratch;
        Layers = layers;
        Gradients = gradients;
    }

    public float Feature(int i) => ((float*)Features)[i];
    public LayerShape Layer(int layer) => ((LayerShape*)Layers)[layer];
    public ref float Parameter(int i) => ref ((float*)Parameters)[i];
    public ref float Gradient(int i) => ref ((float*)Gradients)[i];
    public ref float ScratchAt(int i) => ref ((float*)Scratch)[i];

    private float* Source(bool fromFeatures) => fromFeatures ? (float*)Features : (float*)Scratch;

    // Plain pointer loops, unrolled by four with independent sums (a single one waits on the previous add
    // every term). System.Numerics.Vector would be faster still, but ILGPU builds its IR of every kernel, the
    // CPU's too, and rejects it.

    /// <summary>sum_i x[x + i] W[w + i], x from the features (fromFeatures) or the scratch, W the parameters: four running sums.</summary>
    public float Dot(bool fromFeatures, int x, int w, int n)
    {
        float* xs = Source(fromFeatures) + x, ws = (float*)Parameters + w;
        float s0 = 0f, s1 = 0f, s2 = 0f, s3 = 0f;
        int i = 0;
        for (; i + 3 < n; i += 4)
        {
            s0 += xs[i] * ws[i];
            s1 += xs[i + 1] * ws[i + 1];
            s2 += xs[i + 2] * ws[i + 2];
            s3 += xs[i + 3] * ws[i + 3];
        }
        for (; i < n; i++)
            s0 += xs[i] * ws[i];
        return (s0 + s1) + (s2 + s3);
    }

    /// <summary>start + x[x + 0] W[w + 0] + x[x + 1] W[w + 1] + ..., added in that order (<see cref="SumOrder.FromBias"/>).</summary>
    public float DotInOrder(float start, bool fromFeatures, int x, int w, int n)
    {
        float* xs = Source(fromFeatures) + x, ws = (float*)Parameters + w;
        float sum = start;
        for (int i = 0; i < n; i++)
            sum += xs[i] * ws[i];
        return sum;
    }

    /// <summary>Four rows' sums start + x_q[x_q + 0] W[w + 0] + ..., each added in order: one weight row read once for four rows.</summary>
    public Sums4 Dot4(float start, bool fromFeatures, int x0, int x1, int x2, int x3, int w, int n)
    {
        float* source = Source(fromFeatures), ws = (float*)Parameters + w;
        float* a0 = source + x0, a1 = source + x1, a2 = source + x2, a3 = source + x3;
        float s0 = start, s1 = start, s2 = start, s3 = start;
        for (int i = 0; i < n; i++)
        {
            float weight = ws[i];
            s0 += a0[i] * weight;
            s1 += a1[i] * weight;
            s2 += a2[i] * weight;
            s3 += a3[i] * weight;
        }
        return new Sums4 { S0 = s0, S1 = s1, S2 = s2, S3 = s3 };
    }

    /// <summary>gradient[g + i] += d * x[x + i] for i in [0, n), x as in <see cref="Dot"/>.</summary>
    public void AddScaledInput(int g, float d, bool fromFeatures, int x, int n) => AddScaled((float*)Gradients + g, d, Source(fromFeatures) + x, n);

    /// <summary>scratch[s + i] += d * W[w + i] for i in [0, n).</summary>
    public void AddScaledWeights(int s, float d, int w, int n) => AddScaled((float*)Scratch + s, d, (float*)Parameters + w, n);

    /// <summary>gradient[g + i] += d0 x0[i], then + d1 x1[i], + d2 x2[i], + d3 x3[i]: four rows' terms in row order, one load and store of the
    /// gradient.</summary>
    public void AddScaledInput4(int g, in Sums4 d, bool fromFeatures, int x0, int x1, int x2, int x3, int n)
    {
        float* source = Source(fromFeatures), target = (float*)Gradients + g;
        float* a0 = source + x0, a1 = source + x1, a2 = source + x2, a3 = source + x3;
        float d0 = d.S0, d1 = d.S1, d2 = d.S2, d3 = d.S3;
        for (int i = 0; i < n; i++)
            target[i] = target[i] + d0 * a0[i] + d1 * a1[i] + d2 * a2[i] + d3 * a3[i];
    }

    /// <summary>scratch[s + q stride + i] += d_q W[w + i] for the four rows q: one weight row read once for four rows.</summary>
    public void AddScaledWeights4(int s, int stride, in Sums4 d, int w, int n)
    {
        float* t0 = (float*)Scratch + s, t1 = t0 + stride, t2 = t1 + stride, t3 = t2 + stride, ws = (float*)Parameters + w;
        float d0 = d.S0, d1 = d.S1, d2 = d.S2, d3 = d.S3;
        for (int i = 0; i < n; i++)
        {
            float weight = ws[i];
            t0[i] += d0 * weight;
            t1[i] += d1 * weight;
            t2[i] += d2 * weight;
            t3[i] += d3 * weight;
        }
    }

    private static void AddScaled(float* target, float d, float* source, int n)
    {
        int i = 0;
        for (; i + 3 < n; i += 4)
        {
            float t0 = target[i] + d * source[i], t1 = target[i + 1] + d * source[i + 1];
            float t2 = target[i + 2] + d * source[i + 2], t3 = target[i + 3] + d * source[i + 3];
            target[i] = t0;
            target[i + 1] = t1;
            target[i + 2] = t2;
            target[i + 3] = t3;
        }
        for (; i < n; i++)
            target[i] += d * source[i];
    }

    /// <summary>A float buffer's host address (CPU accelerator only), taken on the host before a launch; 0 for an empty view.</summary>
    public static long Of<T>(ILGPU.ArrayView<T> view) where T : unmanaged => view.Length == 0 ? 0 : view.LoadEffectiveAddressAsPtr().ToInt64();
}
