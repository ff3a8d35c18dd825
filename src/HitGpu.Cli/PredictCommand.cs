// hitgpu predict: scores songs with a saved model: one row per song with its probability and verdict,
// keeping track and artist where the input has them. To stdout, or atomically to --out.
using System.CommandLine;
using CsvHelper;
using System.Globalization;
using System.Text;
using HitGpu.Nn;

namespace HitGpu.Cli;

public static class PredictCommand
{
    public static Command Create(TextWriter output)
    {
        var model = HitGpuCli.PathOption("--model", "model file written by hitgpu train --out", required: true);
        var data = HitGpuCli.PathOption("--data", "CSV with the 15 feature columns by name (target, track, artist, uri optional)", required: true);
        var accelerator = HitGpuCli.AcceleratorOption();
        var outPath = HitGpuCli.PathOption("--out", "write the predictions to this CSV instead of stdout");
        var command = new Command("predict", "Score songs with a saved model") { model, data, accelerator, outPath };
        command.SetAction(parsed =>
        {
            HitGpuCli.CheckOutputs([parsed.GetValue(outPath)], [], [parsed.GetValue(model), parsed.GetValue(data)]);
            var hitModel = ModelFile.Load(parsed.GetValue(model)!);
            var songs = SongData.Load(parsed.GetValue(data)!, requireTarget: false);
            using var device = HitGpuCli.OpenDevice(parsed.GetValue(accelerator)!);
            var probabilities = hitModel.PredictProbabilities(device, songs);
            string csv = Csv(songs, probabilities);
            if (parsed.GetValue(outPath) is { } path)
            {
                AtomicFile.WriteText(path, csv);
                output.WriteLine($"{songs.Count} predictions written to {path}");
            }
            else
            {
                output.Write(csv);
            }
            return HitGpuCli.Ok;
        });
        return command;
    }

    /// <summary>One row per song: track and artist when the input has them (else its row number), P(hit), the verdict.</summary>
    public static string Csv(SongTable songs, IReadOnlyList<float> probabilities)
    {
        bool names = songs.Tracks is not null && songs.Artists is not null;
        using var bytes = new MemoryStream();
        using (var writer = CsvWriter.Create(bytes, SongData.WriterOptions, true))
        {
            writer.WriteRecord(names ? ["track", "artist", "probability", "prediction"] : ["row", "probability", "prediction"]);
            for (int i = 0; i < probabilities.Count; i++)
            {
                string p = probabilities[i].ToString("F6", CultureInfo.InvariantCulture), verdict = probabilities[i] > 0.5f ? "Hit" : "Not a Hit";
                writer.WriteRecord(names ? [songs.Tracks![i], songs.Artists![i], p, verdict] : [(i + 1).ToString(CultureInfo.InvariantCulture), p, verdict]);
            }
        }
        return Encoding.UTF8.GetString(bytes.ToArray());
    }
}
