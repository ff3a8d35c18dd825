// What a prediction says, as hitgpu predict writes it and hitgpu serve answers: per song its track and artist
// (when the input named both) or its row number, its P(hit) to six decimals, and the verdict.
using CsvHelper;

namespace HitGpu.Nn;

public static class PredictionOutput
{
    public static string Verdict(float probability) => probability > 0.5f ? "Hit" : "Not a Hit";

    /// <summary>The CSV's columns: named songs by track and artist, others by their row number.</summary>
    public static string[] CsvHeader(bool names) => names ? ["track", "artist", "probability", "prediction"] : ["row", "probability", "prediction"];

    /// <summary>One song's fields under <see cref="CsvHeader"/>; the record is left open for columns after them.</summary>
    public static void WriteCsvFields(CsvWriter writer, bool names, string? track, string? artist, long row, float probability)
    {
        if (names)
        {
            writer.WriteField(track ?? "");
            writer.WriteField(artist ?? "");
        }
        else
        {
            writer.WriteField(row, "D");
        }
        writer.WriteField(probability, "F6");
        writer.WriteField(Verdict(probability));
    }
}
