// Per-input scaling fitted on the training part only: optionally a quantile transform first (each value
// replaced by the normal score of its rank among the training values, so heavy tails and outliers stop
// dominating, as they never do for tree ensembles), then z = (x - mean) / deviation.
namespace HitGpu.Nn;

public sealed record Standardizer(float[] Means, float[] Deviations)
{
    /// <summary>Per input, the training values at evenly spaced quantiles (null: no quantile transform).</summary>
    public float[][]? QuantileKnots { get; init; }

    public const int KnotCount = 201;

    /// <summary>Fits on a row-major (rows, columns) matrix; with <paramref name="quantiles"/>, the transform too.</summary>
    public static Standardizer Fit(float[] features, int columns, bool quantiles = false)
    {
        int rows = features.Length / columns;
        if (rows == 0)
            throw new ArgumentException("cannot fit a standardiser on no rows");
        float[][]? knots = null;
        if (quantiles)
        {
            knots = new float[columns][];
            var column = new float[rows];
            for (int c = 0; c < columns; c++)
            {
                for (int r = 0; r < rows; r++)
                    column[r] = features[r * columns + c];
                Array.Sort(column);
                knots[c] = Enumerable.Range(0, KnotCount).Select(k => column[(int)Math.Round((double)k * (rows - 1) / (KnotCount - 1))]).ToArray();
            }
            features = Quantile(features, columns, knots);
        }
        var means = new double[columns];
        var squares = new double[columns];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < columns; c++)
                means[c] += features[r * columns + c];
        for (int c = 0; c < columns; c++)
            means[c] /= rows;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < columns; c++)
            {
                double d = features[r * columns + c] - means[c];
                squares[c] += d * d;
            }
        // A constant column would divide by zero: leave it centred but unscaled.
        var deviations = squares.Select(s => Math.Sqrt(s / rows)).Select(d => d > 1e-12 ? d : 1.0).ToArray();
        return new Standardizer(means.Select(m => (float)m).ToArray(), deviations.Select(d => (float)d).ToArray()) { QuantileKnots = knots };
    }

    public float[] Apply(float[] features)
    {
        int columns = Means.Length;
        if (QuantileKnots is not null)
            features = Quantile(features, columns, QuantileKnots);
        var result = new float[features.Length];
        for (int i = 0; i < features.Length; i++)
        {
            int c = i % columns;
            result[i] = (features[i] - Means[c]) / Deviations[c];
        }
        return result;
    }

    /// <summary>Each value to the normal score of its interpolated position among the knots.</summary>
    private static float[] Quantile(float[] features, int columns, float[][] knots)
    {
        var result = new float[features.Length];
        for (int i = 0; i < features.Length; i++)
        {
            var k = knots[i % columns];
            float v = features[i];
            double position;
            if (v <= k[0]) position = 0;
            else if (v >= k[^1]) position = k.Length - 1;
            else
            {
                // Ties (repeated knots, e.g. many zeros) take the middle of their run, so equal values map alike.
                int lo = LowerBound(k, v), hi = UpperBound(k, v);
                if (hi > lo)
                    position = (lo + hi - 1) / 2.0;
                else
                    position = lo - 1 + (v - k[lo - 1]) / (k[lo] - k[lo - 1]);
            }
            double u = (position + 0.5) / k.Length; // strictly inside (0, 1)
            result[i] = (float)NormalQuantile(u);
        }
        return result;
    }

    private static int LowerBound(float[] a, float v)
    {
        int lo = 0, hi = a.Length;
        while (lo < hi) { int mid = (lo + hi) / 2; if (a[mid] < v) lo = mid + 1; else hi = mid; }
        return lo;
    }

    private static int UpperBound(float[] a, float v)
    {
        int lo = 0, hi = a.Length;
        while (lo < hi) { int mid = (lo + hi) / 2; if (a[mid] <= v) lo = mid + 1; else hi = mid; }
        return lo;
    }

    /// <summary>Inverse of the standard normal CDF (Acklam's rational approximation, relative error below 1.2e-9).</summary>
    public static double NormalQuantile(double p)
    {
        double[] a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00];
        double[] b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01, -1.328068155288572e+01];
        double[] c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00];
        double[] d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00];
        const double low = 0.02425;
        if (p < low)
        {
            double q = Math.Sqrt(-2 * Math.Log(p));
            return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
        }
        if (p > 1 - low)
        {
            double q = Math.Sqrt(-2 * Math.Log(1 - p));
            return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
        }
        double r = p - 0.5, s = r * r;
        return (((((a[0] * s + a[1]) * s + a[2]) * s + a[3]) * s + a[4]) * s + a[5]) * r / (((((b[0] * s + b[1]) * s + b[2]) * s + b[3]) * s + b[4]) * s + 1);
    }
}
