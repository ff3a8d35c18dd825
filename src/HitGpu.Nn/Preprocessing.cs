// Everything between a song's 15 raw features and the network's inputs, fitted on the training part only and
// stored in the model file, so training and prediction apply the very same thing:
//   1. the feature encoding (optional log1p of skewed features, one-hot of categorical ones: FeatureEncoding);
//   2. one input transform: none (standard), a quantile transform (each value replaced by the normal score of
//      its rank among the training values, so heavy tails and outliers stop dominating, as they never do for
//      tree ensembles), or a piecewise-linear encoding (each feature becomes B columns, one per quantile bin:
//      0 below the bin, 1 above it, linear inside, so the first layer can weigh every range of a feature the
//      way a tree splits on thresholds);
//      or RealMLP's robust scaling and smooth clipping ((x - median) / IQR, then x / sqrt(1 + (x / 3)^2), so
//      outliers are squashed smoothly instead of ranked away);
//      or, for a learned per-feature embedding (TabM's piecewise-linear embeddings), both: each feature
//      becomes its quantile score followed by its B piecewise-linear columns;
//   3. standardisation z = (x - mean) / deviation of each network input.
namespace HitGpu.Nn;

public enum InputScaling { Standard, Quantile, Piecewise, Embedding, Robust }

/// <summary>The input transform: <see cref="InputScaling"/>, with its number of bins for the piecewise-linear one.</summary>
public readonly record struct InputTransform(InputScaling Scaling, int Bins = 0)
{
    public static readonly InputTransform Standard = new(InputScaling.Standard);
    public static readonly InputTransform Quantile = new(InputScaling.Quantile);
    public static readonly InputTransform Robust = new(InputScaling.Robust);
    public static InputTransform Piecewise(int bins) => new(InputScaling.Piecewise, bins);

    /// <summary>The input of a piecewise-linear embedding: per feature its quantile score, then its <paramref name="bins"/> piecewise columns.</summary>
    public static InputTransform Embedding(int bins) => new(InputScaling.Embedding, bins);

    /// <summary>Network inputs per encoded feature.</summary>
    public int InputsPerFeature => Scaling switch { InputScaling.Piecewise => Bins, InputScaling.Embedding => 1 + Bins, _ => 1 };

    private bool HasBins => Scaling is InputScaling.Piecewise or InputScaling.Embedding;

    /// <summary>Whether it needs each feature's training quantiles.</summary>
    public bool UsesKnots => Scaling != InputScaling.Standard;

    public void Validate()
    {
        if (HasBins ? Bins < 1 || Bins >= Preprocessing.KnotCount : Bins != 0)
            throw new ArgumentException(HasBins
                ? $"piecewise bins must be 1 to {Preprocessing.KnotCount - 1}, got {Bins}"
                : $"bins apply to piecewise-linear inputs only, not to {Scaling.ToString().ToLowerInvariant()} ones");
    }

    /// <summary>As <c>hitgpu train</c> describes it.</summary>
    public string Description => Scaling switch
    {
        InputScaling.Piecewise => $"piecewise-linear inputs over {Bins} quantile bins",
        InputScaling.Embedding => $"quantile scores and piecewise-linear encodings over {Bins} quantile bins (embedding inputs)",
        InputScaling.Quantile => "quantile-normalised inputs",
        InputScaling.Robust => "robust-scaled, smoothly clipped inputs",
        _ => "standardised inputs",
    };
}

/// <summary>
/// Each raw feature's smallest, median and largest value in the training part: what the model has seen. A
/// value further outside than the range is wide (below min - width or above max + width) is far outside it;
/// the medians are the baseline song that explanations start from.
/// </summary>
public sealed record FeatureStatistics(float[] Min, float[] Median, float[] Max)
{
    /// <summary>The statistics of (n, 15) raw features, all rows or those of <paramref name="rows"/>.</summary>
    public static FeatureStatistics Of(float[] raw, IReadOnlyList<int>? rows = null)
    {
        int f = SongData.FeatureCount, n = rows?.Count ?? raw.Length / f;
        var min = new float[f];
        var median = new float[f];
        var max = new float[f];
        var column = new float[n];
        for (int c = 0; c < f; c++)
        {
            for (int r = 0; r < n; r++)
                column[r] = raw[(rows?[r] ?? r) * f + c];
            Array.Sort(column);
            (min[c], max[c]) = (column[0], column[^1]);
            median[c] = n % 2 == 1 ? column[n / 2] : (float)(((double)column[n / 2 - 1] + column[n / 2]) / 2);
        }
        return new FeatureStatistics(min, median, max);
    }

    /// <summary>How many rows of (rows, 15) raw features have a value far outside its feature's training range.</summary>
    public int CountFarOutside(float[] raw)
    {
        int f = SongData.FeatureCount, count = 0;
        for (int r = 0; r < raw.Length / f; r++)
            for (int c = 0; c < f; c++)
            {
                float v = raw[r * f + c], width = Max[c] - Min[c];
                if (v < Min[c] - width || v > Max[c] + width)
                {
                    count++;
                    break;
                }
            }
        return count;
    }
}

/// <summary>
/// The fitted preprocessing: <see cref="Encoding"/>, then <see cref="Transform"/> (with its <see cref="Knots"/>),
/// then per network input a mean and a deviation; and the raw features' training <see cref="Statistics"/>.
/// </summary>
public sealed record Preprocessing
{
    public FeatureEncoding Encoding { get; }
    public InputTransform Transform { get; }

    /// <summary>Per encoded feature, the training values at <see cref="KnotCount"/> evenly spaced quantiles; null for standard inputs.</summary>
    public float[][]? Knots { get; }

    public float[] Means { get; }
    public float[] Deviations { get; }

    /// <summary>The raw features' training statistics; null for models written before they were kept.</summary>
    public FeatureStatistics? Statistics { get; }

    public const int KnotCount = 201;

    /// <summary>Columns out: the network's inputs.</summary>
    public int NetworkInputs => Means.Length;

    /// <summary>The network's inputs for an encoding and a transform.</summary>
    public static int NetworkInputsFor(FeatureEncoding encoding, InputTransform transform) => encoding.Width * transform.InputsPerFeature;

    /// <summary>A fitted preprocessing, checked for consistency (the model file builds one from what it reads).</summary>
    public Preprocessing(FeatureEncoding encoding, InputTransform transform, float[][]? knots, float[] means, float[] deviations,
        FeatureStatistics? statistics = null)
    {
        transform.Validate();
        int inputs = NetworkInputsFor(encoding, transform);
        if (means.Length != inputs || deviations.Length != inputs)
            throw new ArgumentException($"standardisation must have one mean and one deviation per network input ({inputs})");
        if (transform.UsesKnots != knots is not null)
            throw new ArgumentException(transform.UsesKnots ? $"{transform.Description} need quantile knots" : "standardised inputs take no quantile knots");
        if (knots is not null && (knots.Length != encoding.Width || knots.Any(k => k is null || k.Length < 2 || !k.All(float.IsFinite)
            || k.Zip(k.Skip(1)).Any(p => !(p.First <= p.Second)))))
            throw new ArgumentException("quantile knots must be one ascending list of finite values per encoded feature");
        // Inputs the network can take: a mean that is not finite or a deviation that is not positive would make every one NaN or infinite.
        if (!means.All(float.IsFinite) || !deviations.All(d => float.IsFinite(d) && d > 0f && float.IsFinite(1f / d)))
            throw new ArgumentException("the standardisation's means must be finite and its deviations positive and finite");
        if (statistics is not null && (new[] { statistics.Min, statistics.Median,
            statistics.Max }.Any(v => v?.Length != SongData.FeatureCount || !v.All(float.IsFinite))
            || Enumerable.Range(0, SongData.FeatureCount).Any(c => !(statistics.Min[c] <= statistics.Median[c] && statistics.Median[c] <= statistics.Max[c]))))
            throw new
                ArgumentException($"the training statistics must give a finite minimum <= median <= maximum for each of the {SongData.FeatureCount} features");
        Encoding = encoding;
        Transform = transform;
        Statistics = statistics;
        Knots = knots;
        Means = means;
        Deviations = deviations;
    }

    /// <summary>
    /// Fits on (n, 15) raw features, all rows or those of <paramref name="rows"/> (the training part): the knots
    /// (when the transform needs them), then the standardisation, and the features' ranges.
    /// </summary>
    public static Preprocessing Fit(float[] raw, FeatureEncoding encoding, InputTransform transform, IReadOnlyList<int>? rows = null)
    {
        transform.Validate();
        var features = encoding.Apply(raw, rows);
        int columns = encoding.Width, count = features.Length / columns;
        if (count == 0)
            throw new ArgumentException("cannot fit the preprocessing on no count");
        float[][]? knots = null;
        if (transform.UsesKnots)
        {
            knots = new float[columns][];
            var column = new float[count];
            for (int c = 0; c < columns; c++)
            {
                for (int r = 0; r < count; r++)
                    column[r] = features[r * columns + c];
                Array.Sort(column);
                knots[c] = Enumerable.Range(0, KnotCount).Select(k => column[(int)Math.Round((double)k * (count - 1) / (KnotCount - 1))]).ToArray();
            }
            features = Transformed(features, columns, transform, knots, owned: !ReferenceEquals(features, raw));
            columns = NetworkInputsFor(encoding, transform);
        }
        var means = new double[columns];
        var squares = new double[columns];
        for (int r = 0; r < count; r++)
            for (int c = 0; c < columns; c++)
                means[c] += features[r * columns + c];
        for (int c = 0; c < columns; c++)
            means[c] /= count;
        for (int r = 0; r < count; r++)
            for (int c = 0; c < columns; c++)
            {
                double d = features[r * columns + c] - means[c];
                squares[c] += d * d;
            }
        // A constant column would divide by zero: leave it centred but unscaled.
        var deviations = squares.Select(s => Math.Sqrt(s / count)).Select(d => d > 1e-12 ? d : 1.0).ToArray();
        return new Preprocessing(encoding, transform, knots, means.Select(m => (float)m).ToArray(), deviations.Select(d => (float)d).ToArray(),
            FeatureStatistics.Of(raw, rows));
    }

    /// <summary>(n, 15) raw features, all rows or those of <paramref name="rows"/>, to network inputs (one row per row).</summary>
    public float[] Apply(float[] raw, IReadOnlyList<int>? rows = null)
    {
        var features = Encoding.Apply(raw, rows);
        if (Knots is not null)
            features = Transformed(features, Encoding.Width, Transform, Knots, owned: !ReferenceEquals(features, raw));
        int columns = Means.Length;
        // Standardised in place when the steps above made a new array; never into the caller's.
        var result = ReferenceEquals(features, raw) ? new float[features.Length] : features;
        for (int i = 0; i < features.Length; i++)
        {
            int c = i % columns;
            result[i] = (features[i] - Means[c]) / Deviations[c];
        }
        return result;
    }

    /// <summary>The transform of the encoded features: into a new array, or into <paramref name="features"/> when <paramref name="owned"/> and the shape
    /// allows.</summary>
    private static float[] Transformed(float[] features, int columns, InputTransform transform, float[][] knots, bool owned) => transform.Scaling switch
    {
        InputScaling.Piecewise => Piecewise(features, columns, knots, transform.Bins),
        InputScaling.Embedding => Interleaved(QuantileScores(features, columns, knots), Piecewise(features, columns, knots, transform.Bins), columns,
            transform.Bins),
        InputScaling.Robust => RobustClipped(features, columns, knots, inPlace: owned),
        _ => QuantileScores(features, columns, knots, inPlace: owned),
    };

    /// <summary>
    /// RealMLP's robust scaling and smooth clipping: (v - median) / IQR from the feature's knots (the 25th and
    /// 75th percentiles; a feature whose IQR is 0 takes its whole range, or 1), then v / sqrt(1 + (v / 3)^2).
    /// </summary>
    public static float[] RobustClipped(float[] features, int columns, float[][] knots, bool inPlace = false)
    {
        var result = inPlace ? features : new float[features.Length];
        for (int i = 0; i < features.Length; i++)
        {
            var (median, spread) = RobustScale(knots[i % columns]);
            float v = (features[i] - median) / spread;
            result[i] = v / MathF.Sqrt(1f + v / 3f * (v / 3f));
        }
        return result;
    }

    /// <summary>A feature's median and interquartile range from its knots; the range 1 when the knots are all one value.</summary>
    public static (float Median, float Spread) RobustScale(float[] knots)
    {
        float iqr = knots[3 * (knots.Length - 1) / 4] - knots[(knots.Length - 1) / 4], range = knots[^1] - knots[0];
        return (knots[(knots.Length - 1) / 2], iqr > 0f ? iqr : range > 0f ? range : 1f);
    }

    /// <summary>Per row and feature c: the score, then the feature's <paramref name="bins"/> piecewise columns.</summary>
    private static float[] Interleaved(float[] scores, float[] piecewise, int columns, int bins)
    {
        int rows = scores.Length / columns;
        var result = new float[rows * columns * (1 + bins)];
        for (int i = 0; i < rows * columns; i++)
        {
            result[i * (1 + bins)] = scores[i];
            Array.Copy(piecewise, i * bins, result, i * (1 + bins) + 1, bins);
        }
        return result;
    }

    /// <summary>Each value to the normal score of its interpolated position among the knots.</summary>
    public static float[] QuantileScores(float[] features, int columns, float[][] knots, bool inPlace = false)
    {
        var result = inPlace ? features : new float[features.Length];
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
                // (The second search only where v is a knot: elsewhere the run is empty, hi = lo.)
                int lo = LowerBound(k, v), hi = k[lo] == v ? UpperBound(k, v) : lo;
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

    /// <summary>
    /// Input c becomes columns c*bins .. c*bins+bins-1; column b is the value's position inside quantile bin b,
    /// clamped to [0, 1]. A bin of zero width (a value that many songs share, e.g. instrumentalness 0) is a step:
    /// 1 from that value on.
    /// </summary>
    public static float[] Piecewise(float[] features, int columns, float[][] knots, int bins)
    {
        int rows = features.Length / columns;
        var result = new float[rows * columns * bins];
        for (int c = 0; c < columns; c++)
        {
            var k = knots[c];
            for (int b = 0; b < bins; b++)
            {
                var (lo, hi) = BinEdges(k, b, bins);
                for (int r = 0; r < rows; r++)
                {
                    float v = features[r * columns + c];
                    result[(r * columns + c) * bins + b] = hi > lo ? Math.Clamp((v - lo) / (hi - lo), 0f, 1f) : v >= hi ? 1f : 0f;
                }
            }
        }
        return result;
    }

    /// <summary>The values at which bin <paramref name="bin"/> of <paramref name="bins"/> starts and ends, from one feature's knots.</summary>
    public static (float Low, float High) BinEdges(float[] knots, int bin, int bins) =>
        (knots[(int)Math.Round((double)bin * (knots.Length - 1) / bins)], knots[(int)Math.Round((double)(bin + 1) * (knots.Length - 1) / bins)]);

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

    // Acklam's rational approximation of the inverse normal CDF: the central formula (a / b) and the tails (c / d),
    // which switch at p = AcklamLow. Public for the ONNX export, which writes the same formula.
    public static readonly double[] AcklamA = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02,
        -3.066479806614716e+01, 2.506628277459239e+00];
    public static readonly double[] AcklamB = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01,
        -1.328068155288572e+01];
    public static readonly double[] AcklamC = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00,
        4.374664141464968e+00, 2.938163982698783e+00];
    public static readonly double[] AcklamD = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00];
    public const double AcklamLow = 0.02425;

    /// <summary>Inverse of the standard normal CDF (Acklam's rational approximation, relative error below 1.2e-9).</summary>
    public static double NormalQuantile(double p)
    {
        double[] a = AcklamA, b = AcklamB, c = AcklamC, d = AcklamD;
        const double low = AcklamLow;
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
