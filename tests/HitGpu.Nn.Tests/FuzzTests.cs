// Property-based tests (CsCheck) of every entry point a user reaches: the CSV reader, the model loader and
// the command line. The inputs are generated, not listed: random bytes, valid files with random damage, real
// model files truncated, bit-flipped or edited, random option combinations. Each property runs a bounded
// number of cases (FUZZ_ITERATIONS sets it, for a soak run) from a fixed seed (FUZZ_SEED names another, or
// "random" for fresh cases), and CsCheck shrinks a failure to a small case;
// every failure found so far is pinned by a named test in RegressionTests below.
using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using CsCheck;
using HitGpu.Cli;
using static HitGpu.Nn.Tests.CliRunner;

namespace HitGpu.Nn.Tests;

[Collection(AcceleratorCollection.Name)]
public sealed class FuzzTests(AcceleratorFixture fixture) : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("hitgpu-fuzz-").FullName;

    private readonly List<string> mounts = [];

    public void Dispose()
    {
        foreach (var mount in mounts)
            System.Diagnostics.Process.Start("umount", mount)!.WaitForExit();
        Directory.Delete(folder, recursive: true);
    }

    /// <summary>A small tmpfs mounted here (read-only, or nearly full), or null where this machine allows no mount: its paths then stay out of the
    /// pools.</summary>
    private string? Mount(string name, string options)
    {
        string path = Path.Combine(folder, name);
        Directory.CreateDirectory(path);
        using var mount = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("mount",
            ["-t", "tmpfs", "-o", options, "tmpfs", path]) { RedirectStandardError = true })!;
        mount.WaitForExit();
        if (mount.ExitCode != 0)
            return null;
        mounts.Add(path);
        return path;
    }

    private static readonly string[] Lines = Encoding.UTF8.GetString(SongData.Embedded90sBytes()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
    private static readonly string[] Header = CsvText.Split(Lines[0]);

    // ---- the CSV reader ----

    /// <summary>Values a damaged field may take: not numbers, not finite, beyond float32, odd spellings, empty.</summary>
    private static readonly string[] BadValues =
    [
        "NaN", "nan", "Infinity", "-Infinity", "∞", "1e39", "-1e39", "1e308", "-1e308", "3.5e38", "1e-50", "-0", "", " ", "abc", "1,5", "\"",
        "0x1F", "1e", "-", "+1", "١", "1_000", "2", "-1", "0", "1", "0.5", " 0.5", "0.5 ", "\t1", "1\n2", "Ω", "\0",
    ];

    /// <summary>One damage to a generated file: Kind picks what, Row, Column and Value where and with what.</summary>
    public sealed record Damage(int Kind, int Row, int Column, int Value)
    {
        public override string ToString() => $"({Kind}, {Row}, {Column}, {Value})";
    }

    /// <summary>A file made of embedded rows (some of them, columns in some order) with damages applied.</summary>
    public sealed record CsvCase(int[] Rows, int[] ColumnKeys, bool Bom, bool Crlf, bool Utf16, bool RequireTarget, Damage[] Damages)
    {
        public override string ToString() =>
            $"rows [{string.Join(",", Rows)}], keys [{string.Join(",", ColumnKeys)}], bom {Bom}, crlf {Crlf}, utf16 {Utf16}, target " +
                $"{RequireTarget}, damages [{string.Join(", ", Damages.Select(d => d.ToString()))}]";

        public byte[] Bytes()
        {
            var order = Enumerable.Range(0, Header.Length).OrderBy(i => ColumnKeys[i % ColumnKeys.Length]).ThenBy(i => i).ToArray();
            var header = order.Select(i => Header[i]).ToList();
            var rows = Rows.Select(r => order.Select(i => CsvText.Split(Lines[1 + r])[i]).ToList()).ToList();
            int? cut = null;
            var blank = new List<int>();
            foreach (var d in Damages)
            {
                int row = d.Row % rows.Count, column = d.Column % header.Count;
                if (rows[row].Count == 0)
                    rows[row].Add("");
                int field = Math.Min(column, rows[row].Count - 1); // rows may be shorter than the header after a damage
                string value = BadValues[d.Value % BadValues.Length];
                switch (d.Kind)
                {
                    case 0: rows[row][field] = value; break;                                   // a bad value
                    case 1: cut = d.Value; break;                                              // the file cut short
                    case 2: rows[row].Add(value); break;                                       // an extra field
                    case 3: rows[row].RemoveAt(field); break;                                  // a missing field
                    // a duplicate column
                    case 4: header.Add(header[column]); rows.ForEach(f => f.Add(f.Count > 0 ? f[Math.Min(column, f.Count - 1)] : "")); break;
                    // a missing column
                    case 5: header.RemoveAt(column); rows.ForEach(f => { if (f.Count > 0) f.RemoveAt(Math.Min(column, f.Count - 1)); }); break;
                    case 6: header[column] = header[column].ToUpperInvariant(); break;         // a header in capitals (still valid)
                    case 7: rows[row][field] += "\n" + value; break;                           // a line break inside a field
                    case 8: blank.Add(row); break;                                             // an empty line
                    case 9: rows[row] = rows[row].Select(_ => "").ToList(); break;             // an empty row
                    case 10: header[column] = value; break;                                    // a header name damaged
                    default: rows[row][field] = rows[row][field].Insert(d.Value % (rows[row][field].Length + 1), "\""); break; // a stray quote, raw
                }
                if (header.Count == 0)
                    header.Add("x");
            }
            string newline = Crlf ? "\r\n" : "\n";
            var lines = new List<string> { CsvText.Join(header) };
            for (int r = 0; r < rows.Count; r++)
            {
                if (blank.Contains(r))
                    lines.Add("");
                // A stray quote goes in raw: CsvText.Join would escape it into a valid field.
                lines.Add(Damages.Any(d => d.Kind >= 11 && d.Row % rows.Count == r) ? string.Join(",", rows[r]) : CsvText.Join(rows[r]));
            }
            string text = string.Join(newline, lines) + newline;
            if (cut is int c)
                text = text[..(c % (text.Length + 1))];
            var encoding = Utf16 ? (Encoding)new UnicodeEncoding(false, true) : new UTF8Encoding(Bom);
            return [.. encoding.GetPreamble(), .. encoding.GetBytes(text)];
        }
    }

    private static readonly Gen<Damage> DamageGen =
        Gen.Select(Gen.Int[0, 11], Gen.Int[0, 50], Gen.Int[0, 50], Gen.Int[0, 100_000], (k, r, c, v) => new Damage(k, r, c, v));

    private static Gen<CsvCase> CsvCases(int maxDamages) =>
        Gen.Select(Gen.Int[0, Lines.Length - 2].Array[1, 12], Gen.Int[0, 100].Array[Header.Length], Gen.Bool, Gen.Bool,
            Gen.Frequency((9, Gen.Const(false)), (1, Gen.Const(true))), Gen.Bool, DamageGen.Array[0, maxDamages],
            (rows, keys, bom, crlf, utf16, target, damages) => new CsvCase(rows, keys, bom, crlf, utf16, target, damages));

    [Fact]
    public void Undamaged_files_read_back_exactly_whatever_their_column_order_encoding_and_line_ends()
    {
        CsvCases(maxDamages: 0).Sample(c =>
        {
            var table = SongData.Parse(c.Bytes(), "fuzz.csv", c.RequireTarget);
            Assert.Equal(c.Rows.Length, table.Count);
            for (int i = 0; i < c.Rows.Length; i++)
            {
                var fields = CsvText.Split(Lines[1 + c.Rows[i]]);
                for (int f = 0; f < SongData.FeatureCount; f++)
                    Assert.Equal(float.Parse(fields[Array.IndexOf(Header, SongData.FeatureNames[f])], System.Globalization.CultureInfo.InvariantCulture),
                        table.Features[i * SongData.FeatureCount + f]);
                Assert.Equal(float.Parse(fields[^1], System.Globalization.CultureInfo.InvariantCulture), table.Labels![i]);
                Assert.Equal(fields[0], table.Tracks![i]);
            }
        }, seed: Invariant.Seed, iter: Invariant.Iterations(150), threads: 1);
    }

    [Fact]
    public void A_damaged_file_reads_to_sane_values_or_is_refused_in_one_line()
    {
        CsvCases(maxDamages: 3).Sample(c =>
        {
            SongTable table;
            try
            {
                table = SongData.Parse(c.Bytes(), "fuzz.csv", c.RequireTarget);
            }
            catch (InputException e)
            {
                Invariant.OneLine(e.Message, "fuzz.csv");
                return;
            }
            Invariant.Sane(table);
        }, seed: Invariant.Seed, iter: Invariant.Iterations(1500), threads: 1);
    }

    [Fact]
    public void Random_bytes_are_read_or_refused_in_one_line()
    {
        // Half of the cases start with a real header, so the bytes reach the rows.
        var prefix = Encoding.UTF8.GetBytes(Lines[0] + "\n");
        Gen.Select(Gen.Byte.Array[0, 600], Gen.Bool, Gen.Bool, (bytes, header, target) => (Bytes: header ? [.. prefix, .. bytes] : bytes, Target: target))
            .Sample(c =>
            {
                try
                {
                    Invariant.Sane(SongData.Parse(c.Bytes, "fuzz.csv", c.Target));
                }
                catch (InputException e)
                {
                    Invariant.OneLine(e.Message, "fuzz.csv");
                }
            }, seed: Invariant.Seed, iter: Invariant.Iterations(1500), threads: 1);
    }

    // ---- the model loader ----

    /// <summary>Real model files to damage: format 1 (a plain network), and format 2 (an ensemble with adapters behind a periodic embedding; robust
    /// inputs).</summary>
    private static readonly Lazy<byte[][]> RealModels = new(() =>
    {
        using var device = ComputeDevice.Open(AcceleratorKind.Cpu);
        var songs = SongData.LoadEmbedded90s().Subset(Enumerable.Range(0, 400).ToArray());
        var study = TrainingOptions.Study with { Epochs = 1, Hidden = [8] };
        TrainingOptions[] options =
        [
            study with { Inputs = InputTransform.Quantile },
            study with { EnsembleSize = 2, EnsembleKind = EnsembleKind.Batch, Embedding = NumericEmbedding.Periodic, EmbeddingFrequencies = 2,
                EmbeddingDimension = 2 },
            study with { EnsembleSize = 2, Inputs = InputTransform.Robust },
        ];
        return options.Select(o =>
        {
            string path = Path.Combine(Path.GetTempPath(), $"hitgpu-fuzz-model-{Guid.NewGuid():N}.hitgpu");
            ModelFile.Save(Trainer.Train(device, songs, o).Model, path);
            var bytes = File.ReadAllBytes(path);
            File.Delete(path);
            return bytes;
        }).ToArray();
    });

    private static readonly Lazy<byte[]> RealModel = new(() => RealModels.Value[0]);

    private static readonly Lazy<SongTable> Songs = new(() => SongData.LoadEmbedded90s().Subset(Enumerable.Range(0, 16).ToArray()));

    /// <summary>JSON values an edit may put anywhere in the metadata or a tensor entry.</summary>
    private static readonly Func<JsonNode?>[] JsonValues =
    [
        () => null, () => -1, () => 0, () => 1, () => 2, () => 15, () => 1e9, () => 2147483648L, () => 1e300, () => "x", () => "NaN", () => "relu",
        () => true, () => new JsonArray(), () => new JsonObject(), () => new JsonArray(1), () => new JsonArray(15, 1), () => new JsonArray(15, 8, 1),
        () => new JsonArray(15, 2000000000, 1), () => new JsonArray(-3, 1), () => new JsonArray((JsonNode?)null), () => new JsonArray("a", "b"),
        () => new JsonArray(Enumerable.Range(0, 15).Select(_ => (JsonNode?)"NaN").ToArray()),
            () => new JsonArray(Enumerable.Range(0, 15).Select(_ => (JsonNode?)0).ToArray()),
        () => new JsonArray(Enumerable.Range(0, 15).Select(_ => (JsonNode?)1e30).ToArray()),
            () => new JsonArray(Enumerable.Range(0, 15).Select(_ => (JsonNode?)"Infinity").ToArray()),
        () => new JsonArray(0, 40), () => new JsonArray(40, 0), () => new JsonArray(0, 999999999), () => "F64", () => "F32",
    ];

    /// <summary>A real model file, damaged: Kind picks how, the rest where and with what.</summary>
    public sealed record ModelCase(int Kind, int Position, int Bit, int Value, int Field, int[] More)
    {
        public override string ToString() => $"kind {Kind}, position {Position}, bit {Bit}, value {Value}, field {Field}, more [{string.Join(",", More)}]";

        public byte[] Bytes()
        {
            var bytes = (byte[])RealModels.Value[Bit % RealModels.Value.Length].Clone(); // Bit picks the file too: flips use it mod 8, this mod 3
            int headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
            switch (Kind)
            {
                case 0: // random bytes
                    var random = new byte[Position % 3000];
                    new Random(Value).NextBytes(random);
                    return random;
                case 1: // cut short
                    return bytes[..(Position % bytes.Length)];
                case 2: // bits flipped
                    foreach (int p in More.Prepend(Position))
                        bytes[p % bytes.Length] ^= (byte)(1 << (Bit % 8));
                    return bytes;
                case 3: // a header length that lies
                    BinaryPrimitives.WriteUInt64LittleEndian(bytes, Value % 3 == 0 ? (ulong)(headerLength + Position % 64 - 32) : (ulong)Value * 2654435761UL);
                    return bytes;
                case 4: // a metadata field edited, the checksum made again (a buggy writer)
                    return ModelBytes.Edited(bytes, editMetadata: meta =>
                    {
                        var keys = meta.Select(p => p.Key).ToArray();
                        meta[keys[Field % keys.Length]] = JsonValues[Value % JsonValues.Length]();
                    });
                case 5: // a tensor entry edited: the entries are outside the checksum
                    return ModelBytes.Edited(bytes, header =>
                    {
                        var tensors = header.Where(p => p.Key != "__metadata__").Select(p => p.Key).ToArray();
                        var tensor = header[tensors[Field % tensors.Length]]!.AsObject();
                        string[] keys = ["dtype", "shape", "data_offsets"];
                        tensor[keys[Position % 3]] = JsonValues[Value % JsonValues.Length]();
                    });
                case 6: // a tensor value not finite, the checksum made again
                    int at = 8 + headerLength + (Position % ((bytes.Length - 8 - headerLength) / 4)) * 4;
                    BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(at), Value % 2 == 0 ? float.NaN : float.PositiveInfinity);
                    return ModelBytes.Edited(bytes, editMetadata: _ => { });
                default: // a tensor removed from the header
                    return ModelBytes.Edited(bytes, header => header.Remove(header.Where(p
                        => p.Key != "__metadata__").ElementAt(Field % (header.Count - 1)).Key));
            }
        }
    }

    private static readonly Gen<ModelCase> ModelCases =
        Gen.Select(Gen.Int[0, 7], Gen.Int[0, 1_000_000], Gen.Int[0, 7], Gen.Int[0, 1_000_000], Gen.Int[0, 100], Gen.Int[0, 1_000_000].Array[0, 3],
            (k, p, b, v, f, more) => new ModelCase(k, p, b, v, f, more));

    [Fact]
    public void A_damaged_model_file_is_refused_in_one_line_or_predicts_finite_probabilities()
    {
        ModelCases.Sample(c => LoadsSafely(c.Bytes(), fixture.Device), seed: Invariant.Seed, iter: Invariant.Iterations(600), threads: 1);
    }

    /// <summary>The loader's invariant: refused in one line naming the file, or a model whose probabilities are finite.</summary>
    internal static void LoadsSafely(byte[] bytes, ComputeDevice device)
    {
        HitModel model;
        try
        {
            model = ModelFile.Decode(bytes, "fuzz.hitgpu");
        }
        catch (InputException e)
        {
            Invariant.OneLine(e.Message, "fuzz.hitgpu: not a valid HitGpu model: ");
            return;
        }
        var p = model.PredictProbabilities(device, Songs.Value);
        Assert.All(p, v => Assert.True(float.IsFinite(v) && v >= 0f && v <= 1f, $"probability {v}"));
    }

    // ---- the command line ----

    /// <summary>
    /// Files a generated command may name: tiny data, a model, outputs, the inputs themselves, and paths that
    /// reach them or cannot be written: a link to the folder (so linkdir/songs.csv is the data), a hard link
    /// of the data, a device, a 237-character name, and where this machine mounts them a read-only and a full
    /// file system.
    /// </summary>
    private sealed record CliFiles(string Data, string Unlabelled, string Model, string DecadeFolder, string Output, string OutFolder,
        string LinkFolder, string HardLink, string LongName, string? ReadOnly, string? Full, string Candidates, string BadCandidates)
    {
        public string[] Inputs => [Data, Unlabelled, Model, Path.Combine(DecadeFolder, "dataset-of-90s.csv"), Candidates, BadCandidates];
    }

    private CliFiles MakeFiles()
    {
        var songs = SongData.LoadEmbedded90s();
        var small = songs.Subset([.. Enumerable.Range(0, 30), .. Enumerable.Range(songs.Count - 30, 30)]);
        var files = new CliFiles(Path.Combine(folder, "songs.csv"), Path.Combine(folder, "unlabelled.csv"), Path.Combine(folder, "model.hitgpu"),
            Path.Combine(folder, "decades"), Path.Combine(folder, "out.csv"), Path.Combine(folder, "out"),
            Path.Combine(folder, "linkdir"), Path.Combine(folder, "hard.csv"), Path.Combine(folder, new string('n', 233) + ".csv"),
            Mount("read-only", "ro,size=64k"), Mount("full", "size=48k"), Path.Combine(folder, "candidates.txt"), Path.Combine(folder, "bad-candidates.txt"));
        File.CreateSymbolicLink(files.LinkFolder, folder);
        SongData.WriteCsv(small, files.Data);
        var ten = small.Subset(Enumerable.Range(0, 10).ToArray());
        SongData.WriteCsv(new SongTable { Source = ten.Source, Features = ten.Features, Tracks = ten.Tracks, Artists = ten.Artists }, files.Unlabelled);
        Directory.CreateDirectory(files.DecadeFolder);
        SongData.WriteCsv(small, Path.Combine(files.DecadeFolder, "dataset-of-90s.csv"));
        File.WriteAllBytes(files.Model, RealModel.Value);
        File.WriteAllText(files.Candidates, "# baseline\ndefaults\n--learning-rate 0.01\n");
        File.WriteAllText(files.BadCandidates, "defaults\n--learning-rate x\n--no-such-option 1\n");
        System.Diagnostics.Process.Start("ln", [files.Data, files.HardLink])!.WaitForExit();
        return files;
    }

    /// <summary>Each command's options, and the kind of value each takes.</summary>
    private static readonly Dictionary<string, (string Option, string Kind)[]> CommandOptions = new()
    {
        ["train"] = [("--data", "input"), ("--out", "output"), ("--save-splits", "folder"), ("--plot", "folder"), ("--accelerator", "accelerator"),
            ("--epochs", "count"), ("--batch-size", "count"), ("--hidden", "widths"), ("--learning-rate", "real"), ("--weight-decay", "real"),
            ("--schedule", "schedule"), ("--warmup-epochs", "count"), ("--seed", "count"), ("--validation-split", "real"), ("--test-split", "real"),
            ("--early-stopping", "count"), ("--ensemble", "count"), ("--dropout", "real"), ("--inputs", "inputs"), ("--piecewise-bins", "count"),
            ("--log-features", "features"), ("--one-hot", "features"), ("--average-last", "count"), ("--study", "flag"),
            ("--ensemble-kind", "kind"), ("--embedding", "embedding"), ("--embedding-bins", "count"), ("--embedding-dim", "count"),
                ("--embedding-frequencies", "count"),
            ("--label-smoothing", "real"), ("--select-on", "metric")],
        ["evaluate"] = [("--model", "model"), ("--data", "input"), ("--accelerator", "accelerator"), ("--json", "flag"), ("--plot", "folder")],
        ["predict"] = [("--model", "model"), ("--data", "input"), ("--accelerator", "accelerator"), ("--out", "output")],
        ["accuracy"] = [("--data-dir", "folder"), ("--decades", "decades"), ("--seeds", "seeds"), ("--out", "output"), ("--tune", "flag"),
            ("--accelerator", "accelerator"), ("--epochs", "count"), ("--ensemble", "count"), ("--study", "flag"), ("--inputs", "inputs"),
            ("--ensemble-kind", "kind"), ("--embedding", "embedding"), ("--candidates", "candidates")],
        ["devices"] = [],
        ["export"] = [("--model", "model"), ("--onnx", "output")],
        ["explain"] = [("--model", "model"), ("--data", "input"), ("--accelerator", "accelerator"), ("--out", "output"), ("--global", "flag"),
            ("--steps", "count"), ("--plot", "folder")],
    };

    /// <summary>Values of each kind: valid ones, and ones that are not (inputs named as outputs among them).</summary>
    private static Dictionary<string, string[]> ValuesByKind(CliFiles f) => new()
    {
        ["input"] = [f.Data, f.Unlabelled, f.DecadeFolder, f.Model, f.Output, "/nonexistent/x.csv", "", f.Data + "," + f.Data],
        ["output"] = [f.Output, Path.Combine(f.OutFolder, "m.hitgpu"), f.Data, f.Unlabelled, f.Model, "/nonexistent/dir/x", f.DecadeFolder, "",
            Path.Combine(f.LinkFolder, "songs.csv"), Path.Combine(f.LinkFolder, "model.hitgpu"), f.HardLink, "/dev/null", "/dev/full", f.LongName,
            .. new[] { f.ReadOnly, f.Full }.OfType<string>().Select(m => Path.Combine(m, "x.csv"))],
        ["folder"] = [f.OutFolder, f.DecadeFolder, f.Data, "/nonexistent/dir", "", f.LinkFolder,
            .. new[] { f.ReadOnly, f.Full }.OfType<string>().Select(m => Path.Combine(m, "out"))],
        ["model"] = [f.Model, f.Data, "/nonexistent/m.hitgpu", f.DecadeFolder, ""],
        ["candidates"] = [f.Candidates, f.BadCandidates, f.Data, f.Model, "/nonexistent/c.txt", f.DecadeFolder, ""],
        ["accelerator"] = ["cpu", "auto", "cuda", "opencl", "tpu", "CPU", ""],
        ["count"] = ["0", "1", "2", "3", "-1", "40", "2147483648", "-2147483649", "1.5", "x", ""],
        ["real"] = ["0", "0.1", "0.5", "0.99", "1", "-0.5", "1e10", "1e30", "NaN", "Infinity", "1e-45", "x", ""],
        ["widths"] = ["8", "8,4", "", "0", "8,-1", "x", "4,,4", "100000,100000", "60000,60000"],
        ["schedule"] = ["constant", "cosine", "linear", ""],
        ["inputs"] = ["standard", "quantile", "piecewise", "robust", "log", ""],
        ["kind"] = ["independent", "batch", "mini", "tabm", ""],
        ["embedding"] = ["none", "piecewise", "periodic", ""],
        ["metric"] = ["loss", "accuracy", "auc", ""],
        ["features"] = ["skewed", "categorical", "key", "tempo", "key,time_signature", "tempo,tempo", "nosuch", ""],
        ["decades"] = ["90s", "70s", "90s,90s", "x", ""],
        ["seeds"] = ["0", "0,1", "-1", "a", ""],
        ["flag"] = ["true", "false", "x"],
    };

    private static readonly string[] Garbage = ["foo", "Train", "", "--help", "--version", "help", "train2", "-h"];

    [Fact]
    public void Any_command_line_succeeds_or_fails_in_one_line_and_never_harms_a_file()
    {
        var files = MakeFiles();
        var values = ValuesByKind(files);
        var allOptions = CommandOptions.Values.SelectMany(o => o).Distinct().ToArray();
        var commands = CommandOptions.Keys.ToArray();
        // Each case starts from these bytes, so that what one case did cannot show up in the next.
        var before = files.Inputs.ToDictionary(p => p, File.ReadAllBytes);
        var outcomes = new Dictionary<int, int>();
        // A command (now and then garbage), then options mostly its own with values mostly of their kind. Short
        // runs only: unless the case says otherwise, one epoch of two 8-unit networks on 60 songs.
        var gen = Gen.Select(Gen.Int[0, 99], Gen.Int[0, 99],
            Gen.Select(Gen.Int[0, 99], Gen.Int[0, 999], Gen.Int[0, 999], Gen.Int[0, 9]).Array[0, 5],
            (command, garbage, options) => (Command: command, Garbage: garbage, Options: options));
        string[] Args((int Command, int Garbage, (int, int, int, int)[] Options) c)
        {
            string command = c.Command < 90 ? commands[c.Command % commands.Length] : Garbage[c.Garbage % Garbage.Length];
            var own = CommandOptions.GetValueOrDefault(command) ?? [];
            var args = new List<string>();
            if (command != "")
                args.Add(command);
            foreach (var (ownOption, which, valueIndex, shape) in c.Options)
            {
                var (option, kind) = own.Length > 0 && ownOption < 85 ? own[which % own.Length] : allOptions[which % allOptions.Length];
                args.Add(option);
                if (shape == 0)
                    continue; // the value left out
                var pool = shape == 1 ? values.Values.SelectMany(v => v).ToArray() : values[kind];
                args.Add(pool[valueIndex % pool.Length]);
            }
            var defaults = command switch
            {
                "train" or "accuracy" => [("--epochs", "1"), ("--ensemble", "2"), ("--hidden", "8"), ("--accelerator", "cpu"),
                    ("--data", files.Data), ("--data-dir", files.DecadeFolder), ("--decades", "90s"), ("--seeds", "0")],
                "evaluate" => [("--accelerator", "cpu"), ("--model", files.Model), ("--data", files.Data)],
                "predict" => new[] { ("--accelerator", "cpu"), ("--model", files.Model), ("--data", files.Unlabelled) },
                "explain" => [("--accelerator", "cpu"), ("--model", files.Model), ("--data", files.Data), ("--steps", "4")],
                "export" => [("--model", files.Model), ("--onnx", files.Output)],
                _ => [],
            };
            foreach (var (name, value) in defaults)
                if (!args.Contains(name) && own.Any(o => o.Option == name))
                    args.AddRange([name, value]);
            return [.. args];
        }
        gen.Sample(c =>
        {
            int code = RunsSafely(Args(c), files, before);
            lock (outcomes)
                outcomes[code] = outcomes.GetValueOrDefault(code) + 1;
        }, seed: Invariant.Seed, iter: Invariant.Iterations(150), threads: 1, print: c => string.Join(" ", Args(c)));
        // The generator must reach both ends: commands that run, and commands that are refused.
        Assert.True(outcomes.GetValueOrDefault(HitGpuCli.Ok) >= outcomes.Values.Sum() / 10, $"outcomes: {string.Join(", ", outcomes)}");
        Assert.True(outcomes.GetValueOrDefault(HitGpuCli.BadInput) >= outcomes.Values.Sum() / 10, $"outcomes: {string.Join(", ", outcomes)}");
    }

    /// <summary>
    /// The command line's invariant: exit 0; or 2 with one line that names the problem; or 1 with the warning
    /// of a diverged training. Never a stack trace or an internal error. The files it reads unchanged (an
    /// output may replace an older file the command does not read: that is what --out asks); no temporary
    /// file left; an output named by a failed run is not written.
    /// </summary>
    private int RunsSafely(string[] args, CliFiles files, Dictionary<string, byte[]> before)
    {
        foreach (var (path, bytes) in before)
            File.WriteAllBytes(path, bytes);
        // A case may have made either output path a folder (say --plot out.csv): each case starts without both.
        foreach (string path in new[] { files.OutFolder, files.Output, files.LongName }.Concat(new[]
            { files.Full }.OfType<string>().SelectMany(f => new[] { Path.Combine(f, "x.csv"), Path.Combine(f, "out") })))
        {
            if (Directory.Exists(path))
                Directory.Delete(path, recursive: true);
            File.Delete(path);
        }
        var output = new StringWriter();
        var error = new StringWriter();
        // Never a hang: every generated case is a short run (one or two epochs of a small network on 60 songs).
        var run = Task.Run(() => HitGpuCli.Run(args, output, error));
        Assert.True(run.Wait(TimeSpan.FromSeconds(60)), $"{string.Join(" ", args)}: still running after 60 s");
        int code = run.Result;
        string err = error.ToString(), all = output + err;
        string command = string.Join(" ", args);
        Assert.True(code is HitGpuCli.Ok or HitGpuCli.BadInput or HitGpuCli.Failure, $"exit {code}: {command}");
        Assert.DoesNotContain("internal error", err);
        Assert.DoesNotContain("   at ", all);
        if (code == HitGpuCli.BadInput)
        {
            Assert.True(err.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length == 1, $"{command}: {err}");
            Assert.StartsWith("hitgpu: error: ", err);
        }
        if (code == HitGpuCli.Failure)
            Assert.StartsWith("hitgpu: warning: ", err);
        // The files this command reads (named by --data, --model, --data-dir, or inside a folder they name) are as they were.
        var read = args.Zip(args.Skip(1)).Where(p => p.First is "--data" or "--model" or "--data-dir" or "--candidates").Select(p
            => Path.GetFullPath(p.Second == "" ? "." : p.Second)).ToArray();
        foreach (var (path, bytes) in before)
            if (read.Any(r => r == path || path.StartsWith(r + Path.DirectorySeparatorChar, StringComparison.Ordinal)))
                Assert.True(File.Exists(path) && bytes.AsSpan().SequenceEqual(File.ReadAllBytes(path)), $"{command}: changed its input {path}");
        // Every folder below, not through the link back to it.
        Assert.Empty(Directory.GetFiles(folder, "*.tmp", new EnumerationOptions
            { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.ReparsePoint }));
        if (code == HitGpuCli.BadInput)
            Assert.False(File.Exists(files.Output) || File.Exists(Path.Combine(files.OutFolder, "m.hitgpu")),
                $"{command}: an output was written by a failed run");
        return code;
    }
}

/// <summary>Every hole the properties above found (or the issue listed), fixed and pinned by name.</summary>
[Collection(AcceleratorCollection.Name)]
public sealed class FuzzRegressionTests : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("hitgpu-regress-").FullName;
    private static readonly string[] Lines = Encoding.UTF8.GetString(SongData.Embedded90sBytes()).Split('\n', StringSplitOptions.RemoveEmptyEntries);

    public void Dispose() => Directory.Delete(folder, recursive: true);

    private static byte[] FileWith(string column, string value)
    {
        var fields = CsvText.Split(Lines[1]);
        fields[Array.IndexOf(CsvText.Split(Lines[0]), column)] = value;
        return Encoding.UTF8.GetBytes(Lines[0] + "\n" + CsvText.Join(fields) + "\n");
    }

    [Theory]
    [InlineData("1e39")]
    [InlineData("-1e39")]
    [InlineData("1e308")]
    [InlineData("3.5e38")]
    public void A_value_finite_in_the_file_but_not_in_float32_is_refused_with_line_and_column(string value)
    {
        // Found by A_damaged_file_reads_to_sane_values_or_is_refused_in_one_line: it was read as infinity.
        int column = Array.IndexOf(CsvText.Split(Lines[0]), "tempo") + 1;
        var e = Assert.Throws<InputException>(() => SongData.Parse(FileWith("tempo", value), "songs.csv"));
        Assert.Equal($"songs.csv:2:{column}: tempo is {value}, beyond float32's range (±3.4e38)", e.Message);
        Assert.Equal(1, SongData.Parse(FileWith("tempo", "1e-50"), "songs.csv").Count); // a tiny value rounds to 0, as it should
    }

    [Fact]
    public void A_duration_positive_in_the_file_but_zero_in_float32_is_refused()
    {
        // Found by A_damaged_file_reads_to_sane_values_or_is_refused_in_one_line: 1e-50 passed the check in
        // double and became a duration of 0 in float.
        int column = Array.IndexOf(CsvText.Split(Lines[0]), "duration_ms") + 1;
        var e = Assert.Throws<InputException>(() => SongData.Parse(FileWith("duration_ms", "1e-50"), "songs.csv"));
        Assert.Equal($"songs.csv:2:{column}: duration_ms must be positive, got 1E-50", e.Message);
    }

    [Fact]
    public void A_bad_value_with_a_line_break_inside_its_quotes_is_reported_on_one_line()
    {
        var e = Assert.Throws<InputException>(() => SongData.Parse(FileWith("energy", "0.5\nDROP"), "songs.csv"));
        Invariant.OneLine(e.Message, "songs.csv:2:");
        Assert.Contains("'0.5\\nDROP'", e.Message);
    }

    [Fact]
    public void A_feature_column_named_twice_is_refused()
    {
        var text = Lines[0] + ",energy\n" + Lines[1] + ",0.1\n";
        var e = Assert.Throws<InputException>(() => SongData.Parse(Encoding.UTF8.GetBytes(text), "songs.csv"));
        Assert.Equal("songs.csv:1: column 'energy' appears twice (which one holds the feature?)", e.Message);
    }

    private static readonly Lazy<byte[]> Model = new(() =>
    {
        using var device = ComputeDevice.Open(AcceleratorKind.Cpu);
        var model = Trainer.Train(device, SongData.LoadEmbedded90s().Subset(Enumerable.Range(0, 200).ToArray()),
            TrainingOptions.Study with { Epochs = 1, Hidden = [4] }).Model;
        string path = Path.Combine(Path.GetTempPath(), $"hitgpu-regress-{Guid.NewGuid():N}.hitgpu");
        ModelFile.Save(model, path);
        var bytes = File.ReadAllBytes(path);
        File.Delete(path);
        return bytes;
    });

    /// <summary>A real model file's header edited; with <paramref name="editMetadata"/>, its metadata edited and signed again.</summary>
    private static byte[] ModelEdited(Action<JsonObject> editHeader, Action<JsonObject>? editMetadata = null) =>
        ModelBytes.Edited(Model.Value, editHeader, editMetadata);

    private static void Refused(byte[] file, string expected)
    {
        var e = Assert.Throws<InputException>(() => ModelFile.Decode(file, "m.hitgpu"));
        Invariant.OneLine(e.Message, "m.hitgpu: not a valid HitGpu model: ");
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void A_tensor_entry_of_another_type_is_refused_not_crashed_on()
    {
        // Found by A_damaged_model_file_is_refused_in_one_line_or_predicts_finite_probabilities: a shape given as
        // an object, or a dtype as null, threw InvalidOperationException and NullReferenceException.
        Refused(ModelEdited(h => h["member0.layer0.weight"]!["shape"] = new JsonObject()), "has shape [], expected [4,15]");
        Refused(ModelEdited(h => h["member0.layer0.weight"]!["dtype"] = null), "is no dtype, expected F32");
        Refused(ModelEdited(h => h["member0.layer0.bias"]!["data_offsets"] = new JsonArray("a", null)), "has data offsets [] outside");
        Refused(ModelEdited(h => h["member0.layer1.bias"]!["data_offsets"] = new JsonArray(0, 99999999)), "outside the");
    }

    [Fact]
    public void A_header_that_is_not_UTF8_is_refused_not_crashed_on()
    {
        // Found the same way: a bit flip inside the metadata string made text that is not UTF-8, and reading
        // it threw InvalidOperationException ("Cannot transcode invalid UTF-8").
        var file = ModelEdited(_ => { });
        int at = Encoding.UTF8.GetString(file).IndexOf("hitgpu-model/1", StringComparison.Ordinal);
        file[at + 3] = 0xAE;
        var e = Assert.Throws<InputException>(() => ModelFile.Decode(file, "m.hitgpu"));
        Invariant.OneLine(e.Message, "m.hitgpu: not a valid HitGpu model: ");
    }

    [Fact]
    public void A_signed_model_whose_standardisation_or_widths_are_absurd_is_refused()
    {
        // Signed again, so only the checks behind the checksum stand between these and NaN or a huge allocation.
        Refused(ModelEdited(_ => { }, m => m["means"] = new JsonArray(Enumerable.Range(0, 15).Select(_ => (JsonNode?)"NaN").ToArray())),
            "means must be finite");
        Refused(ModelEdited(_ => { }, m => m["deviations"] = new JsonArray(Enumerable.Range(0, 15).Select(_ => (JsonNode?)0).ToArray())),
            "deviations positive");
        Refused(ModelEdited(_ => { }, m => m["widths"] = new JsonArray(15, 2000000000, 1)), "");
        Refused(ModelEdited(_ => { }, m => { m["widths"] = new JsonArray(15, 40000, 1); m["activations"] = new JsonArray("relu", "identity"); }),
            "need more than the file's");
    }

    [Fact]
    public void Predict_onto_its_own_input_is_refused_and_the_input_kept()
    {
        // The issue's first hole, found again by Any_command_line_succeeds_or_fails_in_one_line_and_never_harms_a_file.
        string model = Path.Combine(folder, "m.hitgpu"), songs = Path.Combine(folder, "songs.csv");
        File.WriteAllBytes(model, ModelEdited(_ => { }));
        File.WriteAllText(songs, string.Join("\n", Lines.Take(20)) + "\n");
        var before = File.ReadAllBytes(songs);
        foreach (var target in new[] { songs, Path.Combine(folder, ".", "songs.csv"), model })
        {
            var (code, _, error) = Run("predict", "--accelerator", "cpu", "--model", model, "--data", songs, "--out", target);
            Assert.Equal(HitGpuCli.BadInput, code);
            Invariant.OneLine(error.TrimEnd('\n'), "hitgpu: error: ");
            Assert.Contains("which the command reads", error);
        }
        // Through a symbolic link too.
        string link = Path.Combine(folder, "link.csv");
        File.CreateSymbolicLink(link, songs);
        Assert.Equal(HitGpuCli.BadInput, Run("predict", "--accelerator", "cpu", "--model", model, "--data", songs, "--out", link).Code);
        Assert.Equal(before, File.ReadAllBytes(songs));
        // Training into its data folder, and its splits or plots over the data, likewise.
        Assert.Equal(HitGpuCli.BadInput, Run("train", "--accelerator", "cpu", "--epochs", "1", "--data", folder, "--out", songs).Code);
        string train = Path.Combine(folder, "train.csv");
        File.Copy(songs, train);
        Assert.Equal(HitGpuCli.BadInput, Run("train", "--accelerator", "cpu", "--epochs", "1", "--data", train, "--save-splits", folder).Code);
        Assert.Equal(before, File.ReadAllBytes(train));
        Assert.Equal(before, File.ReadAllBytes(songs));
    }

    [Theory]
    [InlineData("--plot")]
    [InlineData("--out")]
    [InlineData("--save-splits")]
    public void An_empty_output_path_is_refused_before_any_training(string option)
    {
        // Found by the command-line property: --plot "" trained, then failed with two lines (a warning, then
        // "The value cannot be an empty string").
        var (code, output, error) = Run("train", "--accelerator", "cpu", "--epochs", "1", option, "");
        Assert.Equal(HitGpuCli.BadInput, code);
        Assert.Equal($"hitgpu: error: {option}: a path cannot be empty (see hitgpu --help)\n", error);
        Assert.DoesNotContain("epoch", output);
    }

    [Theory]
    [InlineData("", "--decades names no decade")]
    [InlineData(",", "--decades names no decade")]
    public void Accuracy_with_no_decade_is_refused(string decades, string expected)
    {
        // Found by the command-line property: --decades "" ran nothing, then failed averaging no results
        // ("internal error: Sequence contains no elements").
        var (code, _, error) = Run("accuracy", "--data-dir", folder, "--decades", decades, "--accelerator", "cpu");
        Assert.Equal(HitGpuCli.BadInput, code);
        Assert.Contains(expected, error);
    }

    [Fact]
    public void An_output_folder_that_is_a_file_is_refused_before_any_training()
    {
        string file = Path.Combine(folder, "plots");
        File.WriteAllText(file, "not a folder");
        var (code, output, error) = Run("train", "--accelerator", "cpu", "--epochs", "1", "--plot", file);
        Assert.Equal(HitGpuCli.BadInput, code);
        Assert.Contains("is a file; the output needs a folder here", error);
        Assert.DoesNotContain("epoch", output);
    }

    [Theory]
    [InlineData("foo", "unknown command 'foo'; the commands are train, evaluate, predict, devices, accuracy")]
    [InlineData("trian", "unknown command 'trian' (did you mean 'train'?)")]
    [InlineData("Predict", "unknown command 'Predict' (did you mean 'predict'?)")]
    public void An_unknown_command_names_itself_and_the_known_ones(string command, string expected)
    {
        var (code, _, error) = Run(command, "--epochs", "1");
        Assert.Equal(HitGpuCli.BadInput, code);
        Invariant.OneLine(error.TrimEnd('\n'), "hitgpu: error: ");
        Assert.Contains(expected, error);
    }

    [Fact]
    public void No_arguments_prints_the_help()
    {
        var (code, output, error) = Run();
        Assert.Equal(HitGpuCli.Ok, code);
        Assert.Contains("Usage:", output);
        Assert.Contains("train", output);
        Assert.Equal("", error);
    }

    [Fact]
    public void Temporary_files_of_an_interrupted_save_are_removed_by_the_next_save()
    {
        // A process killed mid-write (SIGKILL) cannot remove its temporary file: the next write to the same
        // target removes those of processes that no longer run, and leaves a running process's alone.
        using var finished = System.Diagnostics.Process.Start("true")!;
        finished.WaitForExit();
        string target = Path.Combine(folder, "model.hitgpu");
        string stale = Path.Combine(folder, $".model.hitgpu.{finished.Id}.{Guid.NewGuid():N}.tmp");
        string live = Path.Combine(folder, $".model.hitgpu.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        string other = Path.Combine(folder, $".other.hitgpu.{finished.Id}.{Guid.NewGuid():N}.tmp");
        foreach (var path in new[] { stale, live, other })
            File.WriteAllBytes(path, []);
        AtomicFile.WriteText(target, "new");
        Assert.False(File.Exists(stale));
        Assert.True(File.Exists(live));   // a write in progress (here: of this very process)
        Assert.True(File.Exists(other));  // another target's: its own next write will see to it
        Assert.Equal("new", File.ReadAllText(target));
        Assert.True(AtomicFile.IsTemporaryOf(Path.GetFileName(stale), "model.hitgpu", out int id) && id == finished.Id);
        Assert.False(AtomicFile.IsTemporaryOf("model.hitgpu", "model.hitgpu", out _));
    }

    [Fact]
    public void An_interrupted_write_removes_its_temporary_file()
    {
        // What the CLI's SIGINT and SIGTERM handlers call: the write in progress leaves nothing behind.
        string target = Path.Combine(folder, "out.csv");
        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(target, stream =>
        {
            stream.Write(new byte[1000]);
            Assert.Single(Directory.GetFiles(folder, "*.tmp"));
            AtomicFile.AbandonWrites();
            Assert.Empty(Directory.GetFiles(folder, "*.tmp"));
            throw new InvalidOperationException("interrupted");
        }));
        Assert.False(File.Exists(target));
        Assert.Empty(Directory.GetFiles(folder));
    }
}
