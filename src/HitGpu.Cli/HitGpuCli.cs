// Command-line entry point shared by the executable and the tests: every command goes through Run, which
// turns bad input into one line on stderr and exit code 2, never a stack trace.
using System.CommandLine;
using System.Globalization;
using HitGpu.Kernels;
using HitGpu.Nn;
using HitGpu.Serve;

namespace HitGpu.Cli;

public static class HitGpuCli
{
    public const int Ok = 0, Failure = 1, BadInput = 2;

    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        // A progress bar only for a person at a terminal; plain lines for pipes, files, tests and CI.
        bool interactive = ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected && Environment.GetEnvironmentVariable("CI") is null;
        var root = Commands(output, error, interactive);
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
            string message = string.Join(" ", parsed.Errors[0].Message.Split(['\n', '\r', '\t'],
                StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
            error.WriteLine($"hitgpu: error: {InputException.OneLine(Plain(message))} (see hitgpu --help)");
            return BadInput;
        }
        try
        {
            return parsed.Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (e is InputException or AcceleratorUnavailableException or ArgumentException)
        {
            error.WriteLine($"hitgpu: error: {InputException.OneLine(InFlags(e.Message))}");
            return BadInput;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A read or write the command did not expect to fail (a full disk, a permission): still one line, exit 2.
            error.WriteLine($"hitgpu: error: {InputException.OneLine(AtomicFile.Why(e))}");
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

    /// <summary>Every hitgpu command, each writing to the writers given.</summary>
    public static RootCommand Commands(TextWriter output, TextWriter error, bool interactive = false) =>
        new("HitGpu: predicts whether a song will be a hit from its Spotify audio features, with a small neural network " +
            "trained in hand-written ILGPU kernels.")
        {
            TrainCommand.Create(output, error, interactive),
            EvaluateCommand.Create(output),
            PredictCommand.Create(output, error),
            DevicesCommand.Create(output),
            AccuracyCommand.Create(output),
            ExportCommand.Create(output),
            ExplainCommand.Create(output),
            ServeCommand.Create(output),
        };

    /// <summary>System.CommandLine's "cannot parse ... as expected type 'System.Int32'" in the user's words: the option, its range, the value.</summary>
    private static string Plain(string message)
    {
        var match = System.Text.RegularExpressions.Regex.Match(message, @"Cannot parse argument '(.*)' for option '(.*)' as expected type 'System\.(\w+)'");
        if (!match.Success)
            return message;
        string range = match.Groups[3].Value switch
        {
            "Int32" => $"a whole number from {int.MinValue} to {int.MaxValue}",
            "Int64" => $"a whole number from {long.MinValue} to {long.MaxValue}",
            "Single" or "Double" => "a number (such as 0.001 or 1e-3)",
            "Boolean" => "true or false",
            var type => $"a value of type {type}",
        };
        return $"{match.Groups[2].Value} takes {range}, got '{match.Groups[1].Value}'";
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
    public static SongTable LoadData(string[]? paths, bool keepNames = true, CsvFormat? format = null) =>
        paths is { Length: > 0 } ? SongData.LoadMany(paths, keepNames: keepNames, format: format) : SongData.LoadEmbedded90s();

    /// <summary>
    /// Checks a command's outputs before any work, so that a long run does not fail at its end: each output is
    /// resolved (every link in every folder of its path) and its temporary file created and removed where it
    /// will be written (a read-only folder, a missing permission, a name too long fail here); an output folder
    /// that does not exist yet is proved creatable likewise; and no output may be a file the command reads (by
    /// device and inode: a link in any folder, or a hard link, to an input), which the write would destroy.
    /// </summary>
    public static void CheckOutputs(IEnumerable<string?> files, IEnumerable<string?> folders, IEnumerable<string?> inputs)
    {
        var outputFolders = folders.OfType<string>().ToArray();
        foreach (var folder in outputFolders)
        {
            if (File.Exists(folder))
                throw new InputException($"{folder}: is a file; the output needs a folder here");
            if (!Directory.Exists(folder))
                ProbeCreatable(folder);
        }
        var read = new Dictionary<string, string>();
        foreach (var input in inputs.OfType<string>().Where(i => i != SongData.StandardStream))
            foreach (var file in Directory.Exists(input) ? Directory.GetFiles(input) : [input])
                read.TryAdd(AtomicFile.FileKey(file), file);
        foreach (var file in files.OfType<string>())
        {
            string? parent = Path.GetDirectoryName(Path.GetFullPath(file));
            if (parent is not null && !Directory.Exists(parent) && !File.Exists(parent))
            {
                if (!outputFolders.Any(f => Path.GetFullPath(f) == parent))
                    throw new InputException($"{file}: cannot write: folder {parent} does not exist");
                continue; // inside an output folder made later, proved creatable above
            }
            var target = OutputTarget.Resolve(file);
            target.Probe();
            if (!target.IsStream && read.TryGetValue(AtomicFile.FileKey(target.Path), out var input))
                throw new InputException($"{file}: this output would replace {input}, which the command reads; write it elsewhere");
        }
    }

    /// <summary>A folder that does not exist yet: its nearest existing folder must let a file be created in it.</summary>
    private static void ProbeCreatable(string folder)
    {
        string? existing = Path.GetDirectoryName(Path.GetFullPath(folder));
        while (existing is not null && !Directory.Exists(existing))
            existing = Path.GetDirectoryName(existing);
        if (existing is null)
            return;
        try
        {
            OutputTarget.Resolve(Path.Combine(existing, ".hitgpu-probe")).Probe();
        }
        catch (InputException)
        {
            throw new InputException($"{folder}: cannot create this folder: {existing} is not writable");
        }
    }

    /// <summary>
    /// Writes a command's several outputs all or none: <paramref name="write"/> makes them (each AtomicFile write
    /// staged), then they appear together; folders it creates for them go again if nothing is written.
    /// </summary>
    public static IReadOnlyList<string> WriteAll(IEnumerable<string?> folders, Action write)
    {
        var created = folders.OfType<string>().Where(f => !Directory.Exists(f)).Select(Path.GetFullPath).ToList();
        try
        {
            using var outputs = OutputSet.Begin();
            try
            {
                foreach (var folder in created)
                    Directory.CreateDirectory(folder);
                write();
            }
            catch (Exception e) when (e is InputException or IOException or UnauthorizedAccessException)
            {
                // Staged, not yet renamed: the set's disposal removes every temporary file.
                throw new InputException($"{(e is InputException ? e.Message : $"cannot write the outputs ({AtomicFile.Why(e)})")}; nothing was written");
            }
            return outputs.Commit(); // says itself which outputs were written if one fails
        }
        catch
        {
            RemoveEmpty(created);
            throw;
        }
    }

    private static void RemoveEmpty(IEnumerable<string> folders)
    {
        foreach (var folder in folders.Reverse())
            try
            {
                if (Directory.Exists(folder) && !Directory.EnumerateFileSystemEntries(folder).Any())
                    Directory.Delete(folder);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
    }

    /// <summary>--delimiter and --encoding: how the data files' text is read, for every command that reads songs.</summary>
    public sealed class FormatOptions
    {
        public Option<string?> Delimiter { get; } = new("--delimiter") { Description =
            "the data files' separator: comma, semicolon or tab (default: the one the header holds most of)" };
        public Option<string> Encoding { get; } = new("--encoding") { Description =
            "the data files' text: utf-8 (checked; a file that is not is refused) or latin1 (ISO 8859-1)", DefaultValueFactory = _ => "utf-8" };

        public FormatOptions()
        {
            Delimiter.AcceptOnlyFromAmong("comma", "semicolon", "tab", ",", ";");
            Encoding.AcceptOnlyFromAmong("utf-8", "utf8", "latin1", "iso-8859-1");
        }

        public void AddTo(Command command)
        {
            command.Add(Delimiter);
            command.Add(Encoding);
        }

        public CsvFormat Read(ParseResult parsed) => new(
            parsed.GetValue(Delimiter) switch { "comma" or "," => ',', "semicolon" or ";" => ';', "tab" => '\t', _ => null },
            parsed.GetValue(Encoding) is "latin1" or "iso-8859-1" ? CsvEncoding.Latin1 : CsvEncoding.Utf8);
    }

    public static Option<string> AcceleratorOption()
    {
        var option = new Option<string>("--accelerator") { Description = "auto (CUDA, then OpenCL, then CPU), cpu, cuda or opencl",
            DefaultValueFactory = _ => "auto" };
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

    /// <summary>
    /// The names library messages give the options and ways a caller has (TrainingOptions.BatchSize, ServeOptions.Port,
    /// CsvFormat.Delimiter, AcceleratorKind.Cpu, ModelFile.Load, ...), and this CLI's flags (or commands) for them.
    /// </summary>
    public static IReadOnlyList<(string Name, string Flag)> OptionFlags { get; } =
    [
        .. Enum.GetValues<AcceleratorKind>().Select(kind => ($"{nameof(AcceleratorKind)}.{kind}", $"--accelerator {kind.ToString().ToLowerInvariant()}")),
        ($"{nameof(ComputeDevice)}.{nameof(ComputeDevice.List)}()", "`hitgpu devices`"),
        ($"{nameof(ModelFile)}.{nameof(ModelFile.Save)}", "hitgpu train --out"), ($"{nameof(ModelFile)}.{nameof(ModelFile.Load)}", "--model"),
        ($"{nameof(SongData)}.{nameof(SongData.Load)}", "--data"),
        ($"{nameof(HitGpu.Nn.Onnx.OnnxExport)}.{nameof(HitGpu.Nn.Onnx.OnnxExport.Save)}", "hitgpu export"),
        ($"{nameof(CsvFormat)}.{nameof(CsvFormat.Delimiter)}", "--delimiter"), ($"{nameof(CsvFormat)}.{nameof(CsvFormat.Encoding)}", "--encoding"),
        ($"{nameof(CsvEncoding)}.{nameof(CsvEncoding.Utf8)}", "--encoding utf-8"), ($"{nameof(CsvEncoding)}.{nameof(CsvEncoding.Latin1)}", "--encoding latin1"),
        .. new (string, string)[]
        {
            (nameof(TrainingOptions.BatchSize), "--batch-size"), (nameof(TrainingOptions.Hidden), "--hidden"),
            (nameof(TrainingOptions.EnsembleSize), "--ensemble"), (nameof(TrainingOptions.ValidationFraction), "--validation-split"),
            (nameof(TrainingOptions.TestFraction), "--test-split"), (nameof(TrainingOptions.DropDuplicates), "--drop-duplicates"),
        }.Select(o => ($"{nameof(TrainingOptions)}.{o.Item1}", o.Item2)),
        .. new (string, string)[]
        {
            (nameof(ServeOptions.Name), "--name"), (nameof(ServeOptions.AllowedHosts), "--allowed-hosts"),
            (nameof(ServeOptions.ApiKey), $"--api-key (or {ServeCommand.ApiKeyVariable})"), (nameof(ServeOptions.Port), "--port"),
            (nameof(ServeOptions.GrpcPort), "--grpc-port"), (nameof(ServeOptions.MetricsPort), "--metrics-port"),
            (nameof(ServeOptions.BatchWindow), "--batch-window-ms"), (nameof(ServeOptions.MaxRows), "--max-rows"),
            (nameof(ServeOptions.MaxBodyBytes), "--max-body-mb"), (nameof(ServeOptions.MaxInFlight), "--max-in-flight"),
            (nameof(ServeOptions.MaxUploads), "--max-uploads"), (nameof(ServeOptions.MinBodyBytesPerSecond), "--min-body-rate"),
            (nameof(ServeOptions.BodyTimeout), "--body-timeout-s"), (nameof(ServeOptions.MaxExplainSongs), "--max-explain-songs"),
            (nameof(ServeOptions.DrainTimeout), "--drain-s"), (nameof(ServeOptions.ExplainSteps), "--explain-steps"),
        }.Select(o => ($"{nameof(ServeOptions)}.{o.Item1}", o.Item2)),
    ];

    /// <summary>A name of <see cref="OptionFlags"/>, whole: SongData.Load is not the start of SongData.LoadMany.</summary>
    private static readonly System.Text.RegularExpressions.Regex OptionName = new(
        $@"(?<![\w.])({string.Join("|", OptionFlags.Select(o => System.Text.RegularExpressions.Regex.Escape(o.Name)))})(?!\w)");

    private static readonly Dictionary<string, string> FlagOf = OptionFlags.ToDictionary(o => o.Name, o => o.Flag);

    /// <summary>A library message (an error, a warning) in the CLI's words: each option it names becomes its flag.</summary>
    public static string InFlags(string message) => OptionName.Replace(message, name => FlagOf[name.Value]);
}
