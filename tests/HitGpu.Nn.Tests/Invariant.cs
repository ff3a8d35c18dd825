// The invariants every generated case of the property tests must keep, and the cases' count and seed
// (FUZZ_ITERATIONS, FUZZ_SEED): shared by the CLI's fuzzing and the server's.
using CsCheck;

namespace HitGpu.Nn.Tests;

/// <summary>The invariants every generated case must keep, shared by the properties and the regression tests.</summary>
public static class Invariant
{
    /// <summary>Cases per property: FUZZ_ITERATIONS when set (a soak run), else <paramref name="normal"/>.</summary>
    public static long Iterations(long normal) =>
        long.TryParse(Environment.GetEnvironmentVariable("FUZZ_ITERATIONS"), out long n) && n > 0 ? n : normal;

    /// <summary>The seed of a run when FUZZ_SEED names none: fixed, so that CI runs the same cases every time.</summary>
    public static readonly string DefaultSeed = new PCG(1, 20261201).ToString();

    /// <summary>
    /// The seed of a run: FUZZ_SEED to replay one (CsCheck prints a failing case's), FUZZ_SEED=random for fresh
    /// cases each run, else <see cref="DefaultSeed"/>. Written to the test's output.
    /// </summary>
    public static string? Seed
    {
        get
        {
            string? asked = Environment.GetEnvironmentVariable("FUZZ_SEED");
            string? seed = asked is null or "" ? DefaultSeed : asked == "random" ? null : asked;
            TestContext.Current.TestOutputHelper?.WriteLine($"fuzz seed: {seed ?? "random (CsCheck prints it on a failure)"}");
            return seed;
        }
    }

    /// <summary>A refusal a user can act on: one line, naming the input it is about.</summary>
    public static void OneLine(string message, string names)
    {
        Assert.False(string.IsNullOrWhiteSpace(message), "an empty error message");
        Assert.DoesNotContain('\n', message);
        Assert.DoesNotContain('\r', message);
        Assert.StartsWith(names, message);
    }

    /// <summary>What a table that was read must hold: finite float features, labels 0 or 1, positive durations.</summary>
    public static void Sane(SongTable table)
    {
        Assert.True(table.Count > 0);
        Assert.Equal(table.Count * SongData.FeatureCount, table.Features.Length);
        Assert.All(table.Features, v => Assert.True(float.IsFinite(v), $"feature value {v}"));
        if (table.Labels is { } labels)
            Assert.All(labels, y => Assert.True(y is 0f or 1f, $"label {y}"));
        int duration = Array.IndexOf(SongData.FeatureNames, "duration_ms");
        for (int r = 0; r < table.Count; r++)
            Assert.True(table.Features[r * SongData.FeatureCount + duration] > 0f, $"row {r}: duration not positive");
    }
}
