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
            PredictCommand.Create(output, error),
            DevicesCommand.Create(output),
            AccuracyCommand.Create(output),
            ExportCommand.Create(output),
            ExplainCommand.Create(output),
        };
        // No arguments: the help, as for --help. A first word that names no command: say so, and which exist
        // (System.CommandLine would only say that a command is required, hiding the typo).
        if (args.Length == 0)
            args = ["--help"];
        var commands = root.Subcommands.Select(c => c.Name).ToArray();
        if (!args[0].StartsWith('-') && !commands.Contains(args[0]))
        {
            string? near = commands.FirstOrDefault(c => string.Equals(c, args[0], StringComparison.OrdinalIgnoreCase) || EditDistance(c, args[0]) <= 2);
            error.WriteLine($"hitgpu: error: unknown command '{InputException.OneLine(args[0])}'{(near is null ? "" : $" (did you mean '{near}'?)")}; " +
                $"the commands are {string.Join(", ", commands)} (see hitgpu --help)");
            return BadInput;
        }
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
            error.WriteLine($"hitgpu: error: {InputException.OneLine(e.Message)}");
            return BadInput;
        }
        catch (Exception e)
        {
            // Unexpected: still one line, with the type, so a report can name it. HITGPU_DEBUG=1 shows the stack.
            error.WriteLine($"hitgpu: internal error: {e.GetType().Name}: {InputException.OneLine(e.Message)}");
            if (Environment.GetEnvironmentVariable("HITGPU_DEBUG") == "1")
                error.WriteLine(e);
            return Failure;
        }
    }

    /// <summary>Levenshtein distance: how many one-letter edits turn one word into the other.</summary>
    private static int EditDistance(string a, string b)
    {
        var previous = Enumerable.Range(0, b.Length + 1).ToArray();
        for (int i = 1; i <= a.Length; i++)
        {
            var current = new int[b.Length + 1];
            current[0] = i;
            for (int j = 1; j <= b.Length; j++)
                current[j] = Math.Min(Math.Min(current[j - 1], previous[j]) + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            previous = current;
        }
        return previous[b.Length];
    }

    public static Option<string[]> DataOption(string description)
    {
        var option = new Option<string[]>("--data") { Description = description, AllowMultipleArgumentsPerToken = true };
        option.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<string[]>()?.Any(string.IsNullOrWhiteSpace) == true)
                result.AddError("--data: a path cannot be empty");
        });
        return option;
    }

    /// <summary>An option naming a file or folder: an empty path is refused while parsing, before any work.</summary>
    public static Option<string?> PathOption(string name, string description, bool required = false)
    {
        var option = new Option<string?>(name) { Description = description, Required = required };
        option.Validators.Add(result =>
        {
            if (result.Tokens.Count > 0 && string.IsNullOrWhiteSpace(result.GetValueOrDefault<string?>()))
                result.AddError($"{name}: a path cannot be empty");
        });
        return option;
    }

    /// <summary>The songs a <see cref="DataOption"/> names, or the embedded 90s file when it names none.</summary>
    public static SongTable LoadData(string[]? paths, bool keepNames = true) =>
        paths is { Length: > 0 } ? SongData.LoadMany(paths, keepNames: keepNames) : SongData.LoadEmbedded90s();

    /// <summary>
    /// Checks a command's outputs before any work, so that a long run does not fail at its end: each output
    /// file's folder exists and the file is not a folder; each output folder is not a file; and no output would
    /// replace a file the command reads (an input named as an output, reached through a link, or inside a
    /// folder of inputs), which the write would destroy.
    /// </summary>
    public static void CheckOutputs(IEnumerable<string?> files, IEnumerable<string?> folders, IEnumerable<string?> inputs)
    {
        var outputFolders = folders.OfType<string>().ToArray();
        foreach (var folder in outputFolders)
            if (File.Exists(folder))
                throw new InputException($"{folder}: is a file; the output needs a folder here");
        var outputFiles = files.OfType<string>().ToArray();
        foreach (var file in outputFiles)
        {
            if (Directory.Exists(file))
                throw new InputException($"{file}: is a folder; the output needs a file name");
            string? parent = Path.GetDirectoryName(Path.GetFullPath(file));
            if (parent is not null && !Directory.Exists(parent) && !outputFolders.Any(f => Path.GetFullPath(f) == parent))
                throw new InputException($"{file}: cannot write: folder {parent} does not exist");
        }
        var read = new Dictionary<string, string>();
        foreach (var input in inputs.OfType<string>())
            foreach (var file in Directory.Exists(input) ? Directory.GetFiles(input) : [input])
                read.TryAdd(AtomicFile.Canonical(file), file);
        foreach (var output in outputFiles)
            if (read.TryGetValue(AtomicFile.Canonical(output), out var input))
                throw new InputException($"{output}: this output would replace {input}, which the command reads; write it elsewhere");
    }

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
