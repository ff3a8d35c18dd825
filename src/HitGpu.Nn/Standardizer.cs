// Per-feature standardisation z = (x - mean) / deviation, fitted on the training part only.
namespace HitGpu.Nn;

public sealed record Standardizer(float[] Means, float[] Deviations)
{
    /// <summary>Mean and population deviation of each column of a row-major (rows, columns) matrix, in double.</summary>
    public static Standardizer Fit(float[] features, int columns)
    {
        int rows = features.Length / columns;
        if (rows == 0)
            throw new ArgumentException("cannot fit a standardiser on no rows");
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
        return new Standardizer(means.Select(m => (float)m).ToArray(), deviations.Select(d => (float)d).ToArray());
    }

    public float[] Apply(float[] features)
    {
        int columns = Means.Length;
        var result = new float[features.Length];
        for (int i = 0; i < features.Length; i++)
        {
            int c = i % columns;
            result[i] = (features[i] - Means[c]) / Deviations[c];
        }
        return result;
    }
}
