// Comparison helpers: finiteness first, then |actual - expected| <= abs + rel * |expected|, with the index in the message.
namespace HitGpu.Kernels.Tests;

public static class Tolerance
{
    public const double Abs = 1e-6, Rel = 1e-5;

    public static void AllClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what, double abs = Abs, double rel = Rel)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: expected {expected.Length} values, got {actual.Length}");
        for (int i = 0; i < expected.Length; i++)
            Close(expected[i], actual[i], $"{what}[{i}]", abs, rel);
    }

    public static void Close(double expected, double actual, string what, double abs = Abs, double rel = Rel)
    {
        Assert.True(double.IsFinite(expected), $"{what}: reference is not finite ({expected})");
        Assert.True(double.IsFinite(actual), $"{what}: result is not finite ({actual})");
        double limit = abs + rel * Math.Abs(expected);
        Assert.True(Math.Abs(actual - expected) <= limit,
            $"{what}: expected {expected:R}, got {actual:R} (difference {Math.Abs(actual - expected):E3} > {limit:E3})");
    }

    public static float[] Random(Random rng, int n, float scale = 1f)
    {
        var values = new float[n];
        for (int i = 0; i < n; i++)
            values[i] = (rng.NextSingle() * 2f - 1f) * scale;
        return values;
    }
}
