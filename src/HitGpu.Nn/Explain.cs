// Why a song is predicted a hit. Per song: integrated gradients (Sundararajan et al., 2017), each raw
// feature's contribution to P(hit), from a baseline song (the training medians) to the song along a straight
// path in the network's input space, the gradients computed by our kernels (forward and backward passes over
// many points of the paths at once). Over a labelled file: permutation importance, the accuracy lost when one
// feature's values are shuffled among the songs.
using HitGpu.Kernels;

namespace HitGpu.Nn;

/// <summary>
/// Per song (rows) and raw feature (15 columns), its contribution to P(hit): together they add up to the
/// song's probability minus the baseline's, to within the error of the path integral's <see cref="Steps"/>.
/// </summary>
public sealed record Attributions(float[] Probabilities, float BaselineProbability, float[] Baseline, float[] Contributions, int Steps)
{
    public int Count => Probabilities.Length;

    public ReadOnlySpan<float> Of(int song) => Contributions.AsSpan(song * SongData.FeatureCount, SongData.FeatureCount);
}

public static class Explain
{
    /// <summary>
    /// Songs explained together, each taking <paramref name="steps"/> rows of path points (16,384 rows in
    /// all): the unit a caller may cut a long explanation into, results unchanged (each song's sums are its own).
    /// </summary>
    public static int SongsPerBlock(int steps) => Math.Max(1, 16384 / steps);

    /// <summary>
    /// Integrated gradients of every song: for each of <paramref name="steps"/> points at the midpoints of the
    /// path from the baseline's network inputs to the song's, d P(hit) / d input (the members' mean), times the
    /// difference of the inputs, summed over the network inputs that come from each raw feature. The baseline
    /// is the training medians (or, for models written before they were kept, the medians of these songs).
    /// </summary>
    public static Attributions IntegratedGradients(ComputeDevice device, HitModel model, SongTable songs, int steps = 64,
        float[]? baseline = null, CancellationToken cancellationToken = default)
    {
        if (steps < 1)
            throw new ArgumentOutOfRangeException(nameof(steps), $"the path integral needs at least one step, got {steps}");
        baseline ??= model.Preprocessing.Statistics?.Median ?? FeatureStatistics.Of(songs.Features).Median;
        var preprocessing = model.Preprocessing;
        int inputs = preprocessing.NetworkInputs, perFeature = preprocessing.Transform.InputsPerFeature;
        var x = preprocessing.Apply(songs.Features);
        var origin = preprocessing.Apply(baseline);
        var source = preprocessing.Encoding.SourceFeatures; // encoded column -> raw feature
        var contributions = new float[songs.Count * SongData.FeatureCount];

        int block = SongsPerBlock(steps);
        using var network = new Network(device, model.Layout, Network.ChunkRows);
        using var points = device.Allocate<float>(Math.Min(songs.Count, block) * steps, inputs);
        var path = new float[points.Length];
        var gradient = new float[points.Length];
        var mean = new double[Math.Min(songs.Count, block) * inputs];
        for (int first = 0; first < songs.Count; first += block)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int count = Math.Min(block, songs.Count - first), rows = count * steps;
            for (int s = 0; s < count; s++)
                for (int k = 0; k < steps; k++)
                {
                    float alpha = (k + 0.5f) / steps;
                    for (int j = 0; j < inputs; j++)
                    {
                        float from = origin[j], to = x[(first + s) * inputs + j];
                        path[(s * steps + k) * inputs + j] = from + alpha * (to - from);
                    }
                }
            points.CopyFrom(0, path.AsSpan(0, rows * inputs));
            Array.Clear(mean);
            foreach (var member in model.Networks)
            {
                network.Reset(member);
                network.ProbabilityGradient(points, rows, gradient);
                for (int s = 0; s < count; s++)
                    for (int k = 0; k < steps; k++)
                        for (int j = 0; j < inputs; j++)
                            mean[s * inputs + j] += gradient[(s * steps + k) * inputs + j];
            }
            double scale = 1.0 / (steps * model.Networks.Count);
            for (int s = 0; s < count; s++)
                for (int j = 0; j < inputs; j++)
                {
                    double integrated = (x[(first + s) * inputs + j] - origin[j]) * mean[s * inputs + j] * scale;
                    contributions[(first + s) * SongData.FeatureCount + source[j / perFeature]] += (float)integrated;
                }
        }
        var probabilities = model.PredictProbabilities(device, songs);
        float baselineProbability = model.PredictProbabilities(device, new SongTable { Source = "baseline", Features = baseline })[0];
        return new Attributions(probabilities, baselineProbability, baseline, contributions, steps);
    }

    /// <summary>
    /// Permutation importance on labelled songs: for each raw feature, the accuracy lost when its values are
    /// shuffled among the songs (the mean over <paramref name="repeats"/> seeded shuffles). A feature the model
    /// ignores loses nothing.
    /// </summary>
    public static double[] PermutationImportance(ComputeDevice device, HitModel model, SongTable songs, int repeats = 5, int seed = 0,
        CancellationToken cancellationToken = default)
    {
        var labels = songs.Labels ?? throw new InputException($"{songs.Source}: permutation importance needs a target column");
        int f = SongData.FeatureCount, n = songs.Count;
        using var predictor = new Predictor(device, model);
        double Accuracy(float[] features)
        {
            var p = predictor.Predict(new SongTable { Source = songs.Source, Features = features });
            return Evaluation.Of(p, labels).Accuracy;
        }
        double baseline = Accuracy(songs.Features);
        var importance = new double[f];
        var shuffled = (float[])songs.Features.Clone();
        var order = new int[n];
        for (int c = 0; c < f; c++)
        {
            double lost = 0;
            for (int r = 0; r < repeats; r++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                for (int i = 0; i < n; i++)
                    order[i] = i;
                new Random(seed + 1000 * c + r).Shuffle(order);
                for (int i = 0; i < n; i++)
                    shuffled[i * f + c] = songs.Features[order[i] * f + c];
                lost += baseline - Accuracy(shuffled);
            }
            for (int i = 0; i < n; i++)
                shuffled[i * f + c] = songs.Features[i * f + c];
            importance[c] = lost / repeats;
        }
        return importance;
    }
}
