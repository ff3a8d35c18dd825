// What the network reads: the 15 raw features, optionally with skewed ones replaced by log(1 + x) and
// categorical ones (key, time signature) one-hot encoded. Standardisation comes after this. The encoding
// is part of the model file, so predict applies the same one.
namespace HitGpu.Nn;

public sealed record FeatureEncoding
{
    public IReadOnlyList<string> LogFeatures { get; }
    public IReadOnlyList<string> OneHotFeatures { get; }

    /// <summary>The raw 15 features, unchanged.</summary>
    public static readonly FeatureEncoding Raw = new([], []);

    /// <summary>Heavy right tails (durations in ms, speech and instrument likelihoods, chorus time, section counts).</summary>
    public static readonly string[] SkewedFeatures = ["duration_ms", "speechiness", "instrumentalness", "liveness", "chorus_hit", "sections"];

    /// <summary>Pitch class 0-11 and beats per bar 0-5: categories, not quantities.</summary>
    public static readonly string[] CategoricalFeatures = ["key", "time_signature"];

    /// <summary>The values each one-hot feature takes (anything else, e.g. key -1 "no key detected", is all zeros).</summary>
    public static int[] Categories(string feature) => feature switch
    {
        "key" => Enumerable.Range(0, 12).ToArray(),
        "time_signature" => [0, 1, 3, 4, 5],
        _ => throw new ArgumentException($"'{feature}' is not a categorical feature (key, time_signature)"),
    };

    public FeatureEncoding(IReadOnlyList<string> logFeatures, IReadOnlyList<string> oneHotFeatures)
    {
        foreach (var f in logFeatures.Concat(oneHotFeatures))
            if (!SongData.FeatureNames.Contains(f))
                throw new ArgumentException($"unknown feature '{f}' (features: {string.Join(", ", SongData.FeatureNames)})");
        foreach (var f in oneHotFeatures)
            Categories(f);
        if (logFeatures.Intersect(oneHotFeatures).Any())
            throw new ArgumentException("a feature cannot be both log-transformed and one-hot encoded");
        LogFeatures = logFeatures.ToArray();
        OneHotFeatures = oneHotFeatures.ToArray();
    }

    /// <summary>Names of the encoded columns, in order: the raw features (log ones as log1p(name)), then the one-hot columns.</summary>
    public IReadOnlyList<string> Columns =>
        SongData.FeatureNames.Where(f => !OneHotFeatures.Contains(f)).Select(f => LogFeatures.Contains(f) ? $"log1p({f})" : f)
            .Concat(OneHotFeatures.SelectMany(f => Categories(f).Select(c => $"{f}={c}"))).ToList();

    public int Width => Columns.Count;

    /// <summary>For each encoded column, the raw feature (index into SongData.FeatureNames) it comes from.</summary>
    public int[] SourceFeatures =>
    [
        .. Enumerable.Range(0, SongData.FeatureCount).Where(c => !OneHotFeatures.Contains(SongData.FeatureNames[c])),
        .. OneHotFeatures.SelectMany(f => Categories(f).Select(_ => Array.IndexOf(SongData.FeatureNames, f))),
    ];

    /// <summary>
    /// (n, 15) raw features to (n, <see cref="Width"/>) encoded ones: all rows, or those of <paramref name="rows"/>
    /// in that order. With nothing to encode and all rows, the input itself (no copy): callers never write into it.
    /// </summary>
    public float[] Apply(float[] raw, IReadOnlyList<int>? rows = null)
    {
        int f = SongData.FeatureCount, n = rows?.Count ?? raw.Length / f, width = Width;
        if (rows is null && LogFeatures.Count == 0 && OneHotFeatures.Count == 0)
            return raw;
        var kept = Enumerable.Range(0, f).Where(c => !OneHotFeatures.Contains(SongData.FeatureNames[c])).ToArray();
        var logged = kept.Select(c => LogFeatures.Contains(SongData.FeatureNames[c])).ToArray();
        var oneHot = OneHotFeatures.Select(name => (Column: Array.IndexOf(SongData.FeatureNames, name), Values: Categories(name))).ToArray();
        var encoded = new float[n * width];
        for (int r = 0; r < n; r++)
        {
            int at = r * width, source = (rows?[r] ?? r) * f;
            for (int k = 0; k < kept.Length; k++)
            {
                float v = raw[source + kept[k]];
                // log1p of a negative value would be NaN; the skewed features are never negative in valid data.
                encoded[at++] = logged[k] ? MathF.Log(1f + MathF.Max(0f, v)) : v;
            }
            foreach (var (column, values) in oneHot)
            {
                float v = raw[source + column];
                for (int j = 0; j < values.Length; j++)
                    encoded[at++] = v == values[j] ? 1f : 0f;
            }
        }
        return encoded;
    }
}
