// Songs that appear more than once: the same uri, or the same 15 features and target. A song in both the
// training part and the test part is a leak: the network is tested on what it learnt, and the test accuracy
// reads too high. The trainer warns with the counts, and --drop-duplicates keeps the first of each.
using System.Runtime.InteropServices;

namespace HitGpu.Nn;

/// <summary>What the duplicate check found: rows that repeat an earlier row, and how many of the validation and test rows repeat a row of another
/// part.</summary>
public sealed record DuplicateReport(int Repeated, int AcrossParts, int Dropped)
{
    public string? Warning => Repeated == 0 ? null
        : Dropped > 0 ? $"{Dropped} songs appeared more than once (same uri, or the same features and target) and were dropped before splitting"
        : $"{Repeated} songs appear more than once (same uri, or the same features and target); {AcrossParts} of the validation and test songs " +
          $"also appear in another part, which inflates their accuracy; {nameof(TrainingOptions)}.{nameof(TrainingOptions.DropDuplicates)} keeps the first " +
          "of each";
}

// Found by sorting keys rather than by hash sets: a million songs take two arrays of 16 bytes a row for a
// moment, where sets of 64-bit keys held several times that (measured: 400 MB peak on a 1 M-song training run
// with sets, against 330 MB without the check).
public static class Duplicates
{
    /// <summary>The key of a row's 15 features and target; its uri's key is <see cref="SongTable.UriKeys"/>.</summary>
    private static ulong ValuesKey(SongTable data, int row)
    {
        Span<float> values = stackalloc float[SongData.FeatureCount + 1];
        data.Features.AsSpan(row * SongData.FeatureCount, SongData.FeatureCount).CopyTo(values);
        values[^1] = data.Labels?[row] ?? -1f;
        return SongData.Key(MemoryMarshal.AsBytes(values));
    }

    /// <summary>For each row, whether it repeats an earlier row (same uri, or the same features and target).</summary>
    public static bool[] Repeats(SongTable data)
    {
        var repeats = new bool[data.Count];
        var rows = Enumerable.Range(0, data.Count).ToArray();
        MarkLaterOfEqualKeys(rows.Select(r => ValuesKey(data, r)).ToArray(), rows, repeats);
        if (data.UriKeys is { } uris)
            MarkLaterOfEqualKeys((ulong[])uris.Clone(), rows, repeats);
        return repeats;
    }

    /// <summary>Marks, within each run of equal keys, every row but the first (rows ascending); keys and rows are sorted in place.</summary>
    private static void MarkLaterOfEqualKeys(ulong[] keys, int[] rows, bool[] marks)
    {
        var order = (int[])rows.Clone();
        Array.Sort(keys, order); // equal keys: any order; the smallest row of a run is its first occurrence
        for (int start = 0, end; start < keys.Length; start = end)
        {
            int first = order[start];
            for (end = start + 1; end < keys.Length && keys[end] == keys[start]; end++)
                first = Math.Min(first, order[end]);
            for (int k = start; k < end; k++)
                if (order[k] != first)
                    marks[order[k]] = true;
        }
    }

    /// <summary>Validation rows that repeat a training row, and test rows that repeat a training or validation row.</summary>
    public static int AcrossParts(SongTable data, SplitIndices split)
    {
        // Each row with its part (0 train, 1 validation, 2 test); a row repeats another part when a row of an
        // earlier part has its key.
        var rows = split.Train.Concat(split.Validation).Concat(split.Test).ToArray();
        var parts = new int[data.Count];
        Array.Fill(parts, -1);
        foreach (int r in split.Validation) parts[r] = 1;
        foreach (int r in split.Test) parts[r] = 2;
        foreach (int r in split.Train) parts[r] = 0;
        var across = new bool[data.Count];
        MarkLaterParts(rows.Select(r => ValuesKey(data, r)).ToArray(), rows, parts, across);
        if (data.UriKeys is { } uris)
            MarkLaterParts(rows.Select(r => uris[r]).ToArray(), rows, parts, across);
        return rows.Count(r => across[r]);
    }

    /// <summary>Marks, within each run of equal keys, the rows of a later part than the run's earliest.</summary>
    private static void MarkLaterParts(ulong[] keys, int[] rows, int[] parts, bool[] marks)
    {
        var order = (int[])rows.Clone();
        Array.Sort(keys, order);
        for (int start = 0, end; start < keys.Length; start = end)
        {
            int earliest = parts[order[start]];
            for (end = start + 1; end < keys.Length && keys[end] == keys[start]; end++)
                earliest = Math.Min(earliest, parts[order[end]]);
            for (int k = start; k < end; k++)
                if (parts[order[k]] > earliest)
                    marks[order[k]] = true;
        }
    }
}
