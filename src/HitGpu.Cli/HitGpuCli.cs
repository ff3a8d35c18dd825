// Command-line entry point shared by the executable and the tests: every command goes through Run, which
// turns bad input into one line on stderr and exit code 2, never a stack trace.
using System.CommandLine;
using System.Globalization;
using HitGpu.Kernels;
using HitGpu.Nn;

namespace HitGpu.Cli;

public static class HitGpuCli
{
    public const int Ok = 0, Failure = 1, BadInput = 2;

    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        // A progress bar only for a person at a terminal; plain lines for pipes, files, tests and CI.
        bool interactive = ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected && Environment.GetEnvironmentVariable("CI") is null;
        var root = new RootCommand("HitGpu: predicts whether a song will be a hit from its Spotify audio features, with a small neural network trained in hand-written ILGPU kernels.")
        {
            TrainCommand.Create(output, error, interactive),
            EvaluateCommand.Create(output),
            PredictCommand.Create(output),
            DevicesCommand.Create(output),
            AccuracyCommand.Create(output),
        };
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            // System.CommandLine lists allowed values on several lines: keep the error to one.
            string message = string.Join(" ", parsed.Errors[0].Message.Split(['\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
            error.WriteLine($"hitgpu: error: {message} (see hitgpu --help)");
            return BadInput;
        }
        try
        {
            return parsed.Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (e is InputException or AcceleratorUnavailableException or ArgumentException)
        {
            error.WriteLine($"hitgpu: error: {e.Message}");
            return BadInput;
        }
        catch (Exception e)
        {
            // Unexpected: still one line, with the type, so a report can name it. HITGPU_DEBUG=1 shows the stack.
            error.WriteLine($"hitgpu: internal error: {e.GetType().Name}: {e.Message}");
            if (Environment.GetEnvironmentVariable("HITGPU_DEBUG") == "1")
                error.WriteLine(e);
            return Failure;
        }
    }

    public static Option<string[]> DataOption(string description) =>
        new("--data") { Description = description, AllowMultipleArgumentsPerToken = true };

    /// <summary>The songs a <see cref="DataOption"/> names, or the embedded 90s file when it names none.</summary>
    public static SongTable LoadData(string[]? paths) => paths is { Length: > 0 } ? SongData.LoadMany(paths) : SongData.LoadEmbedded90s();

    public static Option<string> AcceleratorOption()
    {
        var option = new Option<string>("--accelerator") { Description = "auto (CUDA, then OpenCL, then CPU), cpu, cuda or opencl", DefaultValueFactory = _ => "auto" };
        option.AcceptOnlyFromAmong("auto", "cpu", "cuda", "opencl");
        return option;
    }

    public static ComputeDevice OpenDevice(string kind) => ComputeDevice.Open(ComputeDevice.ParseKind(kind));

    public static string Describe(ComputeDevice device) => $"{device.Kind.ToString().ToLowerInvariant()} ({device.Name})";

    public static string Percent(double fraction) => (fraction * 100).ToString("F2", CultureInfo.InvariantCulture) + "%";

    public static string Number(float value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>"64,32" as [64, 32]; an empty string is no hidden layer.</summary>
    public static int[] ParseWidths(string text)
    {
        if (string.IsNullOrWhiteSpace(text))
            return [];
        return text.Split(',').Select(part => int.TryParse(part.Trim(), out int w) && w > 0
            ? w
            : throw new ArgumentException($"--hidden takes positive widths separated by commas, e.g. 64,32; got '{text}'")).ToArray();
    }
}
