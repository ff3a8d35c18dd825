// hitgpu predict: scores songs with a saved model: one row per song with its probability and verdict,
// keeping track and artist where the input has them. Streams: reads, scores and writes a chunk at a time,
// so memory stays flat whatever the file's size. To stdout, or atomically to --out.
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using CsvHelper;
using HitGpu.Nn;
using Microsoft.Win32.SafeHandles;

namespace HitGpu.Cli;

public static class PredictCommand
{
    /// <summary>Songs read, scored and written at a time.</summary>
    public const int ChunkRows = 1 << 16;

    public static Command Create(TextWriter output, TextWriter error)
    {
        var model = HitGpuCli.PathOption("--model", "model file written by hitgpu train --out", required: true);
        var data = HitGpuCli.PathOption("--data", "CSV with the 15 feature columns by name (target, track, artist, uri optional)", required: true);
        var accelerator = HitGpuCli.AcceleratorOption();
        var outPath = HitGpuCli.PathOption("--out", "write the predictions to this CSV instead of stdout");
        var format = new HitGpuCli.FormatOptions();
        var command = new Command("predict", "Score songs with a saved model") { model, data, accelerator, outPath };
        format.AddTo(command);
        command.SetAction(parsed =>
        {
            string dataPath = parsed.GetValue(data)!;
            // "-", /dev/stdout: as without --out
            string? outFile = OutputTarget.NamesStandardOutput(parsed.GetValue(outPath)) ? null : parsed.GetValue(outPath);
            HitGpuCli.CheckOutputs([outFile], [], [parsed.GetValue(model), dataPath]);
            var hitModel = ModelFile.Load(parsed.GetValue(model)!);
            using var device = HitGpuCli.OpenDevice(parsed.GetValue(accelerator)!);
            var chunks = SongData.ReadAhead(SongData.ReadChunks(dataPath, ChunkRows, requireTarget: false, format: format.Read(parsed)));
            // Progress for a person watching stderr, unless the predictions themselves go to that terminal.
            bool watched = ReferenceEquals(error, Console.Error) && !Console.IsErrorRedirected && Environment.GetEnvironmentVariable("CI") is null;
            var progress = watched && (outFile is not null || Console.IsOutputRedirected) ? error : null;
            if (outFile is { } path)
            {
                var summary = new Summary();
                AtomicFile.Write(path, stream =>
                {
                    using var writer = CsvWriter.Create(stream, SongData.WriterOptions, leaveOpen: true);
                    summary = Write(writer, hitModel, device, chunks, progress);
                });
                output.WriteLine($"{summary.Rows} predictions written to {path}{summary.FarOutsideNote}");
            }
            else
            {
                // Straight into the stdout stream, a FileStream on descriptor 1 (Console.Out flushes every write, and
                // its stream ignores a closed pipe); tests hand a StringWriter instead.
                try
                {
                    using var writer = ReferenceEquals(output, Console.Out)
                        ? CsvWriter.Create(new FileStream(new SafeFileHandle(1, ownsHandle: false), FileAccess.Write, 1 << 16),
                            SongData.WriterOptions, leaveOpen: false)
                        : CsvWriter.Create(output, SongData.WriterOptions, leaveOpen: true);
                    var summary = Write(writer, hitModel, device, chunks, progress);
                    if (summary.FarOutsideNote != "")
                        error.WriteLine($"hitgpu: note: {summary.FarOutside} of {summary.Rows} songs have a feature far outside the training range");
                }
                catch (IOException e) when (IsClosedPipe(e))
                {
                    // The reader went away (`hitgpu predict ... | head`): stop scoring, quietly, as Unix tools do.
                    progress?.WriteLine();
                }
            }
            return HitGpuCli.Ok;
        });
        return command;
    }

    /// <summary>A write to a pipe whose reader has closed it (EPIPE).</summary>
    internal static bool IsClosedPipe(IOException e) => e.HResult == 32 || e.Message.Contains("Broken pipe", StringComparison.OrdinalIgnoreCase);

    /// <summary>What a prediction run saw: rows scored, and how many had a feature far outside the training range (null: the model does not know its
    /// ranges).</summary>
    public readonly record struct Summary(long Rows, long? FarOutside)
    {
        public string FarOutsideNote => FarOutside is > 0 ? $" ({FarOutside} songs have a feature far outside the training range)" : "";
    }

    /// <summary>
    /// One row per song, in input order: track and artist when the input has them (else its row number),
    /// P(hit), the verdict. A bad row stops the run (the caller's atomic write then leaves no file).
    /// </summary>
    private static Summary Write(CsvWriter writer, HitModel model, HitGpu.Kernels.ComputeDevice device, IEnumerable<SongTable> chunks, TextWriter? progress)
    {
        var clock = Stopwatch.StartNew();
        long rows = 0;
        long? farOutside = model.Preprocessing.Statistics is null ? null : 0;
        bool header = false;
        foreach (var (songs, probabilities) in model.PredictChunks(device, chunks))
        {
            bool names = songs.Tracks is not null && songs.Artists is not null;
            if (!header)
            {
                writer.WriteRecord(PredictionOutput.CsvHeader(names));
                header = true;
            }
            for (int i = 0; i < probabilities.Length; i++)
            {
                PredictionOutput.WriteCsvFields(writer, names, songs.Tracks?[i], songs.Artists?[i], rows + i + 1, probabilities[i]);
                writer.EndRecord();
            }
            rows += probabilities.Length;
            farOutside += model.Preprocessing.Statistics?.CountFarOutside(songs.Features);
            progress?.Write(string.Create(CultureInfo.InvariantCulture,
                $"\r{rows:N0} songs scored, {rows / Math.Max(1e-9, clock.Elapsed.TotalSeconds):N0} songs/s "));
        }
        progress?.WriteLine();
        writer.Flush();
        return new Summary(rows, farOutside);
    }
}
