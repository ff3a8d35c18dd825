// Adam: one step worked out by hand, and the fused kernel against the reference over several steps.
namespace HitGpu.Kernels.Tests;

[Collection(AcceleratorCollection.Name)]
public sealed class AdamTests(AcceleratorFixture fixture)
{
    private readonly ComputeDevice device = fixture.Device;

    [Fact]
    public void First_step_matches_values_worked_out_by_hand()
    {
        // t = 1, lr = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-7, no weight decay. Parameter 1.0, gradient 0.5:
        //   m = 0.1 * 0.5 = 0.05                 v = 0.001 * 0.25 = 0.00025
        //   m / (1 - 0.9) = 0.5                  sqrt(v) / sqrt(1 - 0.999) = sqrt(0.25) = 0.5
        //   p = 1.0 - 0.1 * 0.5 / (0.5 + 1e-7) = 1.0 - 0.09999998 = 0.90000002
        // Parameter -2.0, gradient -4.0: m = -0.4, v = 0.016, m-hat = -4, sqrt(v-hat) = 4,
        //   p = -2.0 + 0.1 * 4 / (4 + 1e-7) = -1.9000000025 (float: -1.9)
        // Parameter 3.0, gradient 0: m = v = 0, p stays 3.0.
        // With weight decay 0.5 (AdamW) the first parameter is first shrunk: 1.0 * (1 - 0.1 * 0.5) = 0.95,
        //   then 0.95 - 0.09999998 = 0.85000002.
        float[] p = [1f, -2f, 3f];
        float[] g = [0.5f, -4f, 0f];
        float[] m = new float[3], v = new float[3];
        Adam.UpdateReference(p, g, m, v, AdamStep.At(1, 0.1f));
        Tolerance.Close(0.90000002, p[0], "p0", 1e-7, 0);
        Tolerance.Close(-1.9, p[1], "p1", 1e-7, 0);
        Assert.Equal(3f, p[2]);
        Tolerance.Close(0.05, m[0], "m0", 5e-8, 0); // (1 - 0.9f) is 0.10000002 in float
        Tolerance.Close(0.00025, v[0], "v0", 0, 2e-5); // (1 - 0.999f) is 0.00099999 in float

        float[] pDecay = [1f];
        float[] mDecay = new float[1], vDecay = new float[1];
        Adam.UpdateReference(pDecay, [0.5f], mDecay, vDecay, AdamStep.At(1, 0.1f, StepSettings.Default with { WeightDecay = 0.5f }));
        Tolerance.Close(0.85000002, pDecay[0], "p0 with weight decay", 1e-7, 0);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(63)]
    [InlineData(3137)] // the default network's parameter count
    [InlineData(100_003)]
    public void Kernel_matches_reference_over_steps(int n)
    {
        var rng = new Random(n);
        var p = Tolerance.Random(rng, n);
        var m = new float[n];
        var v = new float[n];
        using var pd = device.Upload<float>(p, n);
        using var gd = device.Allocate<float>(n);
        using var md = device.Upload<float>(m, n);
        using var vd = device.Upload<float>(v, n);
        for (int t = 1; t <= 3; t++)
        {
            var g = Tolerance.Random(rng, n, 0.1f * t);
            var step = AdamStep.At(t, 1e-2f, StepSettings.Default with { WeightDecay = t == 3 ? 0.01f : 0f });
            Adam.UpdateReference(p, g, m, v, step);
            gd.CopyFrom(g);
            device.AdamUpdate(pd.View, gd.View, md.View, vd.View, step);
        }
        Tolerance.AllClose(p, pd.ToArray(), "parameters");
        Tolerance.AllClose(m, md.ToArray(), "m");
        Tolerance.AllClose(v, vd.ToArray(), "v");
    }
}
