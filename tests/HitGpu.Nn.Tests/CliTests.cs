// The hitgpu command through the same entry point as the executable: output, exit codes, one-line errors.
using System.Reflection;
using HitGpu.Cli;
using static HitGpu.Nn.Tests.CliRunner;

namespace HitGpu.Nn.Tests;

[Collection(AcceleratorCollection.Name)] // CPU accelerators run one at a time in a test run
public sealed class CliTests : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("hitgpu-cli-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    private string InFolder(string name) => Path.Combine(folder, name);

    private static void AssertOneLineError(int code, string error, string expected)
    {
        Assert.Equal(HitGpuCli.BadInput, code);
        Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("hitgpu: error: ", error);
        Assert.Contains(expected, error);
    }

    [Fact]
    public void Whole_workflow_train_save_evaluate_predict_plot()
    {
        string model = InFolder("m.hitgpu"), splits = InFolder("splits"), plots = InFolder("plots");
        var (code, output, error) = Run("train", "--accelerator", "cpu", "--epochs", "3", "--out", model, "--save-splits", splits, "--plot", plots);
        Assert.True(code == 0, error);
        var testAccuracy = System.Text.RegularExpressions.Regex.Match(output, @"test accuracy (\d+\.\d\d)%").Groups[1].Value;
        Assert.NotEmpty(testAccuracy);
        Assert.Equal(["test.csv", "train.csv", "validation.csv"], Directory.GetFiles(splits).Select(Path.GetFileName).Order());
        Assert.Equal(829, File.ReadAllLines(Path.Combine(splits, "test.csv")).Length); // header + 828 songs

        // Evaluating the saved model on the saved test part gives the accuracy training reported.
        (code, output, error) = Run("evaluate", "--model", model, "--data", Path.Combine(splits, "test.csv"), "--accelerator", "cpu", "--plot", plots);
        Assert.True(code == 0, error);
        Assert.Contains($"accuracy   {testAccuracy}%", output);
        Assert.Contains("ROC AUC", output);
        Assert.Matches(@"actual hit\s+\d+\s+\d+", output);
        (code, output, _) = Run("evaluate", "--model", model, "--data", Path.Combine(splits, "test.csv"), "--accelerator", "cpu", "--json");
        var json = System.Text.Json.Nodes.JsonNode.Parse(output)!;
        Assert.Equal(828, (int)json["songs"]!);
        Assert.Equal(double.Parse(testAccuracy, System.Globalization.CultureInfo.InvariantCulture), (double)json["accuracy"]! * 100, 2);

        foreach (var png in new[] { "loss.png", "accuracy.png", "roc.png" })
        {
            var bytes = File.ReadAllBytes(Path.Combine(plots, png));
            Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], bytes[..4]);
            Assert.Equal(900, System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16)));
        }

        // Predict on songs without a target, track or artist, columns shuffled: one row per song.
        string songs = InFolder("songs.csv");
        var lines = File.ReadAllLines(Path.Combine(splits, "test.csv"));
        File.WriteAllLines(songs, lines.Select(l => string.Join(",", l.Split(',')[^16..^1].Reverse())));
        (code, output, error) = Run("predict", "--model", model, "--data", songs, "--accelerator", "cpu");
        Assert.True(code == 0, error);
        var rows = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("row,probability,prediction", rows[0]);
        Assert.Equal(829, rows.Length);
        Assert.Matches(@"^1,0\.\d{6},(Hit|Not a Hit)$", rows[1]);

        string predictions = InFolder("predictions.csv");
        (code, output, error) = Run("predict", "--model", model, "--data", Path.Combine(splits, "test.csv"), "--accelerator", "cpu", "--out", predictions);
        Assert.True(code == 0, error);
        var written = File.ReadAllLines(predictions);
        Assert.Equal("track,artist,probability,prediction", written[0]);
        Assert.Equal(829, written.Length);
    }

    /// <summary>The header and rows 1-300 of the 90s file, with one field of data row 2 (file line 3) replaced.</summary>
    private string BadFile(string name, string column, string value)
    {
        var lines = System.Text.Encoding.UTF8.GetString(SongData.Embedded90sBytes()).Split('\n')[..301];
        var header = lines[0].Split(',');
        int c = Array.IndexOf(header, column);
        // The numeric columns follow the three text columns; count them from the end, where no quoting occurs.
        var fields = lines[2].Split(',');
        int fromEnd = header.Length - c;
        if (value == "<drop>")
            fields = fields[..^1];
        else
            fields[^fromEnd] = value;
        lines[2] = string.Join(",", fields);
        string path = InFolder(name);
        File.WriteAllText(path, string.Join("\n", lines) + "\n");
        return path;
    }

    [Theory]
    [InlineData("tempo", "fast", ":3:14: tempo is not a number: 'fast'")]
    [InlineData("energy", "NaN", ":3:5: energy must be finite")]
    [InlineData("loudness", "Infinity", ":3:7: loudness must be finite")]
    [InlineData("duration_ms", "-1", ":3:15: duration_ms must be positive")]
    [InlineData("target", "yes", ":3:19: target is not a number: 'yes'")]
    [InlineData("target", "0.5", ":3:19: target must be 0 or 1")]
    [InlineData("target", "<drop>", ":3: row has 18 fields, the header has 19")]
    public void Bad_data_through_the_cli_names_file_line_and_column(string column, string value, string expected)
    {
        string path = BadFile("bad.csv", column, value);
        var (code, _, error) = Run("train", "--data", path, "--accelerator", "cpu", "--epochs", "1");
        AssertOneLineError(code, error, path + expected);
    }

    [Fact]
    public void The_library_names_its_own_options_and_the_CLI_its_flags()
    {
        // A library caller reads TrainingOptions' property names, never a flag; the CLI maps the same names to its flags.
        var options = new TrainingOptions { EnsembleSize = 32, Hidden = [100_000], BatchSize = 100_000, Epochs = 1 };
        using var device = HitGpu.Kernels.ComputeDevice.Open(HitGpu.Kernels.AcceleratorKind.Cpu);
        var error = Assert.Throws<InputException>(() => Trainer.Train(device, SongData.LoadEmbedded90s(), options));
        Assert.Contains(TrainingOptions.SmallerNetwork, error.Message);
        Assert.Contains("TrainingOptions.BatchSize", error.Message);
        Assert.DoesNotContain("--", error.Message);
        string inFlags = HitGpuCli.InFlags(error.Message);
        Assert.Contains("use a smaller --batch-size, --hidden or --ensemble", inFlags);
        Assert.DoesNotContain("TrainingOptions.", inFlags);
    }

    [Fact]
    public void Each_library_name_the_CLI_maps_is_a_public_member_and_each_flag_an_option_of_a_command()
    {
        var flags = HitGpuCli.OptionFlags;
        Assert.Equal(flags.Count, flags.DistinctBy(o => o.Name).Count());
        Type[] library = [.. new[] { typeof(ComputeDevice), typeof(TrainingOptions), typeof(HitGpu.Serve.ServeOptions) }
            .SelectMany(t => t.Assembly.GetExportedTypes())];
        var commands = HitGpuCli.Commands(TextWriter.Null, TextWriter.Null).Subcommands;
        foreach (var (name, flag) in flags)
        {
            // The name: Type.Member, a public property or method of a library type, or a value of its enum; "()": a call without arguments.
            int dot = name.IndexOf('.');
            Assert.True(dot > 0, $"{name}: not Type.Member");
            var type = Assert.Single(library, t => t.Name == name[..dot]);
            string member = name[(dot + 1)..];
            var members = type.GetMember(member.TrimEnd('(', ')'), BindingFlags.Public | BindingFlags.Static | BindingFlags.Instance)
                .Where(m => m is PropertyInfo or MethodInfo || (type.IsEnum && m is FieldInfo)).ToArray();
            Assert.True(members.Length > 0, $"{name}: {type.Name} has no public property, method or value {member}");
            if (member.EndsWith("()", StringComparison.Ordinal))
                Assert.True(members.Any(m => m is MethodInfo method && method.GetParameters().All(p => p.IsOptional)), $"{name}: takes arguments");
            // The flag: [hitgpu COMMAND] [--option [VALUE]], perhaps in backticks, perhaps with an aside in parentheses.
            string[] words = System.Text.RegularExpressions.Regex.Replace(flag, @" \(.*\)$", "").Trim('`').Split(' ');
            IEnumerable<System.CommandLine.Command> among = commands;
            if (words[0] == "hitgpu")
            {
                among = commands.Where(c => c.Name == words[1]).ToArray();
                Assert.True(among.Count() == 1, $"{name}: hitgpu has no command {words[1]}");
                words = words[2..];
            }
            if (words.Length == 0)
                continue; // a command alone
            Assert.True(words.Length <= 2, $"{flag}: more than an option and its value");
            var options = among.SelectMany(c => c.Options).Where(o => o.Name == words[0]).ToArray();
            Assert.True(options.Length > 0, $"{name}: no hitgpu command{(among.Count() == 1 ? $" but {among.First().Name}" : "")} has {words[0]}");
            foreach (var option in words.Length == 2 ? options : [])
                Assert.True(option.GetCompletions(System.CommandLine.Completions.CompletionContext.Empty).Any(c => c.Label == words[1]),
                    $"{name}: {words[0]} takes no value {words[1]}");
        }
    }

    [Fact]
    public void A_network_too_large_for_memory_is_refused_in_one_line()
    {
        // 3,864 rows x 32 members x 100,000 hidden units: some 46 GiB for one layer's activations (the parameters, 0.9 GB, fit).
        string model = Path.Combine(folder, "huge.hitgpu");
        var (code, _, error) = Run("train", "--accelerator", "cpu", "--ensemble", "32", "--hidden", "100000", "--batch-size", "100000", "--epochs",
            "1", "--out", model);
        Assert.Equal(2, code);
        Assert.Contains("the network needs about", error);
        Assert.Contains("use a smaller --batch-size, --hidden or --ensemble", error); // the library's TrainingOptions names, as flags
        Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => !l.Contains("warning"));
        Assert.False(File.Exists(model));
    }

    [Fact]
    public void Train_takes_several_files_and_a_folder()
    {
        string decades = InFolder("decades");
        Directory.CreateDirectory(decades);
        var lines = System.Text.Encoding.UTF8.GetString(SongData.Embedded90sBytes()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        File.WriteAllLines(Path.Combine(decades, "a.csv"), lines[..2001]);
        File.WriteAllLines(Path.Combine(decades, "b.csv"), [lines[0], .. lines[2001..]]);
        var (code, output, error) = Run("train", "--data", decades, "--accelerator", "cpu", "--epochs", "1");
        Assert.True(code == 0, error);
        Assert.Contains("5520 songs from ", output);
        (code, output, error) = Run("train", "--data", Path.Combine(decades, "a.csv"), Path.Combine(decades, "b.csv"), "--accelerator", "cpu", "--epochs", "1");
        Assert.True(code == 0, error);
        Assert.Contains("5520 songs from ", output);
        Assert.Contains("(3864 train / 828 validation / 828 test songs", output);
    }

    [Fact]
    public void Devices_lists_the_cpu_as_usable()
    {
        var (code, output, _) = Run("devices");
        Assert.Equal(0, code);
        Assert.Matches(@"(?m)^cpu\s+CPUAccelerator\s+\d+ GiB\s+yes", output);
        Assert.Matches(@"(?m)^cuda\s", output);
    }

    [Fact]
    public void Bad_model_files_and_bad_predict_input_give_one_line_and_no_output_file()
    {
        string model = InFolder("m.hitgpu");
        Assert.Equal(0, Run("train", "--accelerator", "cpu", "--epochs", "1", "--out", model).Code);
        var bytes = File.ReadAllBytes(model);
        string truncated = InFolder("truncated.hitgpu");
        File.WriteAllBytes(truncated, bytes[..(bytes.Length / 2)]);
        string predictions = InFolder("p.csv");
        var (code, output, error) = Run("predict", "--model", truncated, "--data", "x.csv", "--out", predictions);
        AssertOneLineError(code, error, $"{truncated}: not a valid HitGpu model");
        Assert.False(File.Exists(predictions));

        string edited = InFolder("edited.hitgpu");
        bytes[^1] ^= 1;
        File.WriteAllBytes(edited, bytes);
        (code, _, error) = Run("evaluate", "--model", edited);
        AssertOneLineError(code, error, "checksum mismatch");

        string noFeature = InFolder("noloudness.csv");
        File.WriteAllText(noFeature, "danceability,energy,key\n0.5,0.5,1\n");
        (code, _, error) = Run("predict", "--model", model, "--data", noFeature, "--out", predictions, "--accelerator", "cpu");
        AssertOneLineError(code, error, $"{noFeature}:1: missing column 'loudness'");
        Assert.False(File.Exists(predictions));

        string unlabelled = InFolder("unlabelled.csv");
        File.WriteAllLines(unlabelled, [string.Join(",", SongData.FeatureNames), string.Join(",", Enumerable.Repeat("1", 15))]);
        (code, _, error) = Run("evaluate", "--model", model, "--data", unlabelled, "--accelerator", "cpu");
        AssertOneLineError(code, error, "missing column 'target'");

        (code, _, error) = Run("train", "--accelerator", "cpu", "--epochs", "1", "--out", InFolder("no/such/folder/m.hitgpu"));
        AssertOneLineError(code, error, "does not exist");
    }

    [Fact]
    public void Training_that_diverges_warns_exits_1_and_saves_the_last_good_weights()
    {
        string model = InFolder("nan.hitgpu");
        var (code, _, error) = Run("train", "--accelerator", "cpu", "--epochs", "3", "--learning-rate", "1e30", "--out", model);
        Assert.Equal(HitGpuCli.Failure, code);
        Assert.StartsWith("hitgpu: warning: ", error);
        Assert.Contains("loss became NaN in epoch 1", error);
        Assert.All(ModelFile.Load(model).Networks[0], p => Assert.True(float.IsFinite(p)));
    }

    [Fact]
    public void Accuracy_runs_the_protocol_per_seed_and_tune_reports_validation_only()
    {
        string data = InFolder("decades"), report = InFolder("ACCURACY.md"), refused = InFolder("refused.md");
        Directory.CreateDirectory(data);
        string file = Path.Combine(data, "dataset-of-90s.csv");
        SongData.WriteCsv(SongData.LoadEmbedded90s(), file);
        string[] common = ["--data-dir", data, "--decades", "90s", "--seeds", "0,1", "--accelerator", "cpu", "--study", "--epochs", "2"];

        var (code, output, error) = Run(["accuracy", .. common, "--out", report]);
        Assert.True(code == 0, error);
        var perSeed = System.Text.RegularExpressions.Regex.Matches(output, @"90s seed \d: test accuracy (\d+\.\d\d)%").Select(m => m.Groups[1].Value).ToArray();
        Assert.Equal(2, perSeed.Length);
        // Each run is `hitgpu train` with that seed, and the report holds what the runs printed, beside the peers.
        var (trainCode, trained, trainError) = Run("train", "--data", file, "--seed", "1", "--study", "--epochs", "2", "--accelerator", "cpu");
        Assert.True(trainCode == 0, trainError);
        Assert.Contains($"test accuracy {perSeed[1]}%", trained);
        string text = File.ReadAllText(report);
        Assert.Contains($"| 90s | {perSeed[0]} | {perSeed[1]} |", text);
        Assert.Contains("| 90s | 79.9 ± 0.8 | 85.3 ± 0.7 |", text);
        Assert.Contains("hitgpu accuracy --data-dir", text);

        // Made again, the report keeps what was written by hand below the marker, and only that.
        File.WriteAllText(report, text.Replace("| 90s | 79.9", "| 90s | edited") + $"\n{AccuracyCommand.NotesMarker}\n\nHow the defaults were chosen.\n");
        (code, _, error) = Run(["accuracy", .. common, "--out", report]);
        Assert.True(code == 0, error);
        string again = File.ReadAllText(report);
        Assert.Contains("| 90s | 79.9 ± 0.8 |", again);
        Assert.DoesNotContain("edited", again);
        Assert.Contains($"| 90s | {perSeed[0]} | {perSeed[1]} |", again);
        Assert.EndsWith($"\n{AccuracyCommand.NotesMarker}\n\nHow the defaults were chosen.\n", again);

        (code, output, error) = Run(["accuracy", .. common, "--tune"]);
        Assert.True(code == 0, error);
        Assert.DoesNotContain("test", output);
        Assert.Equal(2, System.Text.RegularExpressions.Regex.Matches(output, @"90s seed \d: validation accuracy \d+\.\d\d%").Count);
        Assert.Matches(@"\| 90s \| \d+\.\d\d ± \d+\.\d\d \| 0\.\d{4} \|", output);
        Assert.Contains("mean validation accuracy over 1 decades: ", output);

        (code, _, error) = Run(["accuracy", .. common, "--tune", "--out", refused]);
        AssertOneLineError(code, error, "--tune");
        Assert.False(File.Exists(refused));
    }

    [Fact]
    public void On_a_GPU_train_says_which_path_trains_and_why_not_the_GPU_epoch()
    {
        // Plans of a CUDA device without its driver: the 48 KB any kernel may take, and Hopper's opt-in limit.
        var cuda = HitGpu.Kernels.DevicePlan.For(HitGpu.Kernels.AcceleratorKind.Cuda, 1024, 132) with { PathOverride = null };
        var hopper = HitGpu.Kernels.DevicePlan.For(HitGpu.Kernels.AcceleratorKind.Cuda, 1024, 132, sharedBytesPerGroup: 227 * 1024) with
            { PathOverride = null };
        Assert.Equal("training path: the GPU epoch (one launch an epoch)", TrainCommand.PathLine(cuda, TrainingOptions.Study));
        string why = TrainCommand.PathLine(cuda, new TrainingOptions())!; // the defaults' three members do not fit in 48 KB
        Assert.StartsWith("training path: layered, not the GPU epoch: its 9,411 parameters", why);
        Assert.Contains("use a smaller --batch-size, --hidden or --ensemble", why);
        Assert.Equal("training path: the GPU epoch (one launch an epoch)", TrainCommand.PathLine(hopper, new TrainingOptions()));
        Assert.Equal("training path: layered (HITGPU_TRAINING_PATH)", TrainCommand.PathLine(cuda with
            { PathOverride = HitGpu.Kernels.TrainingPath.Layered }, TrainingOptions.Study));
        Assert.Null(TrainCommand.PathLine(HitGpu.Kernels.DevicePlan.For(HitGpu.Kernels.AcceleratorKind.Cpu, 2, 1), TrainingOptions.Study));
    }

    [Fact]
    public void Tune_with_candidates_ranks_every_candidate_against_the_first_on_the_same_splits()
    {
        string data = InFolder("decades"), candidates = InFolder("candidates.txt"), table = InFolder("ranked.md");
        Directory.CreateDirectory(data);
        SongData.WriteCsv(SongData.LoadEmbedded90s(), Path.Combine(data, "dataset-of-90s.csv"));
        string[] common = ["--data-dir", data, "--decades", "90s", "--seeds", "0,1", "--accelerator", "cpu", "--tune"];
        File.WriteAllText(candidates, "# baseline first\n--study --epochs 1\n\n--study --epochs 1 --learning-rate 0.01  # faster\n");

        var (code, output, error) = Run(["accuracy", .. common, "--candidates", candidates, "--out", table]);
        Assert.True(code == 0, error);
        Assert.Contains("2 candidates x 1 decades x 2 seeds = 4 runs", output);
        Assert.Contains("runs 4/4, ", output);
        string ranked = File.ReadAllText(table);
        var rows = System.Text.RegularExpressions.Regex.Matches(ranked, @"\| (\d) \| (\d) \| `([^`]*)` \| (\d+\.\d\d) \| ([+-]\d+\.\d\d) ± (\d+\.\d\d) \|");
        Assert.Equal(2, rows.Count);
        var baseline = rows.Single(r => r.Groups[2].Value == "2"); // the file's line 2: the first candidate
        Assert.Equal("--study --epochs 1", baseline.Groups[3].Value);
        Assert.Equal(("+0.00", "0.00"), (baseline.Groups[5].Value, baseline.Groups[6].Value));
        Assert.Equal("--study --epochs 1 --learning-rate 0.01", rows.Single(r => r.Groups[2].Value == "4").Groups[3].Value);
        // Ranked by mean validation accuracy.
        Assert.True(double.Parse(rows[0].Groups[4].Value, System.Globalization.CultureInfo.InvariantCulture)
            >= double.Parse(rows[1].Groups[4].Value, System.Globalization.CultureInfo.InvariantCulture));

        // Each candidate's mean is the one --tune alone prints for its options (the same runs).
        (code, output, error) = Run(["accuracy", .. common, "--study", "--epochs", "1"]);
        Assert.True(code == 0, error);
        string alone = System.Text.RegularExpressions.Regex.Match(output, @"mean validation accuracy over 1 decades: (\d+\.\d\d)%").Groups[1].Value;
        Assert.Equal(alone, baseline.Groups[4].Value);

        // A mistake in the file: its line and column, nothing written.
        File.WriteAllText(candidates, "--study\n--epochs 1 --learning-rat 0.1\n");
        File.Delete(table);
        (code, _, error) = Run(["accuracy", .. common, "--candidates", candidates, "--out", table]);
        AssertOneLineError(code, error, $"{candidates}: line 2, column 12:");
        Assert.False(File.Exists(table));
        (code, _, error) = Run(["accuracy", "--data-dir", data, "--decades", "90s", "--accelerator", "cpu", "--candidates", candidates]);
        AssertOneLineError(code, error, "needs --tune");
        (code, _, error) = Run(["accuracy", .. common, "--candidates", candidates, "--epochs", "3"]);
        AssertOneLineError(code, error, "--epochs was given here");
    }

    [Fact]
    public void Train_prints_one_line_per_epoch_and_the_test_accuracy()
    {
        var (code, output, error) = Run("train", "--accelerator", "cpu", "--study", "--epochs", "2", "--batch-size", "64");
        Assert.True(code == 0, error);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Count(l => l.StartsWith("epoch ")));
        Assert.Matches(@"^epoch 1/2  loss \d\.\d{4}  accuracy \d+\.\d\d%  val_loss \d\.\d{4}  val_accuracy \d+\.\d\d%  \d+\.\d\d s",
            lines.First(l => l.StartsWith("epoch 1")));
        Assert.Matches(@"^test accuracy \d+\.\d\d%", lines[^1]);
        // The embedded file repeats 28 songs (pandas agrees: duplicated by uri or by all other columns): one warning line.
        Assert.StartsWith("hitgpu: warning: 28 songs appear more than once", error);
        Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Theory]
    [InlineData("quantile-normalised inputs", "15-64-32-1")]
    [InlineData("piecewise-linear inputs over 8 quantile bins", "120-64-32-1", "--inputs", "piecewise")]
    [InlineData("piecewise-linear inputs over 3 quantile bins", "45-64-32-1", "--piecewise-bins", "3")]
    [InlineData("piecewise-linear inputs over 2 quantile bins", "30-64-32-1", "--inputs", "piecewise", "--piecewise-bins", "2")]
    [InlineData("", "15-64-32-1", "--inputs", "standard")]
    public void One_input_transform_is_chosen_from_the_options(string described, string network, params string[] args)
    {
        var (code, output, error) = Run(["train", "--accelerator", "cpu", "--epochs", "1", "--ensemble", "1", .. args]);
        Assert.True(code == 0, error);
        var first = output.Split('\n')[0];
        Assert.Contains($"network {network};", first);
        if (described == "")
            Assert.DoesNotContain("inputs", first); // standardised only: nothing to say
        else
            Assert.Contains(described, first);
    }

    [Theory]
    [InlineData("file not found", "train", "--data", "/nonexistent/songs.csv")]
    [InlineData("--hidden takes positive widths", "train", "--hidden", "64,x")]
    [InlineData("epochs must be at least 1", "train", "--epochs", "0")]
    [InlineData("splits must be above 0", "train", "--test-split", "0.9")]
    [InlineData("'tpu' not recognized", "train", "--accelerator", "tpu")]
    [InlineData("--epochs", "train", "--epochs", "many")]
    [InlineData("--piecewise-bins applies to --inputs piecewise only, not quantile", "train", "--inputs", "quantile", "--piecewise-bins", "4")]
    [InlineData("piecewise bins must be 1 to 200, got 0", "train", "--piecewise-bins", "0")]
    [InlineData("'log' not recognized", "train", "--inputs", "log")]
    public void Bad_input_gives_one_line_and_exit_code_2(string expected, params string[] args)
    {
        var (code, output, error) = Run(args);
        AssertOneLineError(code, error, expected);
        Assert.DoesNotContain("   at ", error + output);
    }

    [Fact]
    public void Cuda_on_a_machine_without_one_is_a_clear_error()
    {
        // CI has no GPU; on a GPU machine this test checks nothing and says so by returning early.
        using (var probe = ComputeDevice.Open(AcceleratorKind.Auto))
            if (probe.Kind == AcceleratorKind.Cuda)
                return;
        var (code, _, error) = Run("train", "--accelerator", "cuda", "--epochs", "1");
        Assert.Equal(HitGpuCli.BadInput, code);
        AssertOneLineError(code, error, "no CUDA device found on this machine");
        Assert.Contains("(try --accelerator cpu, or `hitgpu devices` to list what ILGPU sees)", error);
        // A library caller reads the kind to ask for and the call that lists the devices, not the CLI's.
        var e = Assert.Throws<AcceleratorUnavailableException>(() => ComputeDevice.Open(AcceleratorKind.Cuda));
        Assert.Contains("(try AcceleratorKind.Cpu, or ComputeDevice.List() to list what ILGPU sees)", e.Message);
        Assert.DoesNotContain("--", e.Message);
        Assert.DoesNotContain("hitgpu", e.Message);
    }
}
