// Stratified, seeded train / validation / test split: each class is shuffled on its own and cut in the same
// proportions, so every part keeps the file's balance of hits.
namespace HitGpu.Nn;

public sealed record SplitIndices(int[] Train, int[] Validation, int[] Test);

public static class Split
{
    /// <summary>
    /// Cuts each class into train (1 - validation - test), then validation and test; indices come back
    /// sorted within each part. Default 70/15/15, as in the original study.
    /// </summary>
    public static SplitIndices Stratified(float[] labels, int seed, double validationFraction = 0.15, double testFraction = 0.15)
    {
        if (validationFraction < 0 || testFraction < 0 || validationFraction + testFraction >= 1)
            throw new ArgumentException($"validation ({validationFraction}) and test ({testFraction}) fractions must be >= 0 and leave room for training");
        var rng = new Random(seed);
        var train = new List<int>();
        var validation = new List<int>();
        var test = new List<int>();
        foreach (float label in new[] { 0f, 1f })
        {
            var members = Enumerable.Range(0, labels.Length).Where(i => labels[i] == label).ToArray();
            rng.Shuffle(members);
            int heldOut = (int)Math.Round(members.Length * (validationFraction + testFraction));
            int validationCount = heldOut == 0 ? 0 : (int)Math.Round(heldOut * validationFraction / (validationFraction + testFraction));
            train.AddRange(members[heldOut..]);
            validation.AddRange(members[..validationCount]);
            test.AddRange(members[validationCount..heldOut]);
        }
        train.Sort();
        validation.Sort();
        test.Sort();
        return new SplitIndices(train.ToArray(), validation.ToArray(), test.ToArray());
    }
}
