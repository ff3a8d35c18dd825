// Songs that appear more than once: the same uri, or the same 15 features and target. A song in both the
// training part and the test part is a leak: the network is tested on what it learnt, and the test accuracy
// reads too high. The trainer warns with the counts, and --drop-duplicates keeps the first of each.
using System.Runtime.InteropServices;

namespace HitGpu.Nn;

/// <summary>What the duplicate check found: rows that repeat an earlier row, and how many of the validation and test rows repeat a row of another part.</summary>
public sealed record DuplicateReport(int Repeated, int AcrossParts, int Dropped)
{
    public string? Warning => Repeated == 0 ? null
        : Dropped > 0 ? $"{Dropped} songs appeared more than once (same uri, or the same features and target) and were dropped before splitting"
        : $"{Repeated} songs appear more than once (same uri, or the same features and target); {AcrossParts} of the validation and test songs " +
          "also appear in another part, which inflates their accuracy; --drop-duplicates keeps the first of each";
}

public static class Duplicates
{
    /// <summary>The two keys of a row: its uri's (when the table has uris) and its features' and target's.</summary>
    private static (ulong? Uri, ulong Values) Keys(SongTable data, int row)
    {
        Span<float> values = stackalloc float[SongData.FeatureCount + 1];
        data.Features.AsSpan(row * SongData.FeatureCount, SongData.FeatureCount).CopyTo(values);
        values[^1] = data.Labels?[row] ?? -1f;
        return (data.UriKeys?[row], SongData.Key(MemoryMarshal.AsBytes(values)));
    }

    /// <summary>For each row, whether it repeats an earlier row (by either key).</summary>
    public static bool[] Repeats(SongTable data)
    {
        var uris = new HashSet<ulong>();
        var values = new HashSet<ulong>();
        var repeats = new bool[data.Count];
        for (int r = 0; r < data.Count; r++)
        {
            var (uri, value) = Keys(data, r);
            bool seen = !values.Add(value);
            if (uri is ulong u)
                seen |= !uris.Add(u);
            repeats[r] = seen;
        }
        return repeats;
    }

    /// <summary>Validation rows that repeat a training row, and test rows that repeat a training or validation row.</summary>
    public static int AcrossParts(SongTable data, SplitIndices split)
    {
        var uris = new HashSet<ulong>();
        var values = new HashSet<ulong>();
        bool Seen(int row)
        {
            var (uri, value) = Keys(data, row);
            return values.Contains(value) || (uri is ulong u && uris.Contains(u));
        }
        void Add(int row)
        {
            var (uri, value) = Keys(data, row);
            values.Add(value);
            if (uri is ulong u)
                uris.Add(u);
        }
        foreach (int r in split.Train)
            Add(r);
        int across = split.Validation.Count(Seen);
        foreach (int r in split.Validation)
            Add(r);
        return across + split.Test.Count(Seen);
    }
}
