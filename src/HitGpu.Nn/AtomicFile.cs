// Output files appear whole or not at all: written to a temporary file beside the target (the target's real
// folder, through every link), flushed to disk, given the replaced file's mode and owner, then renamed over
// it. A crash, a full disk or an exception midway leaves the old file (or none) in place. Outputs that are not
// regular files (standard output, a FIFO, a character device such as /dev/null) are written through as a
// stream, never replaced; a folder, a block device, a link to nothing or a file with several names (hard
// links, which a rename would split) is refused. Several outputs of one command go through one OutputSet:
// all are staged first, then all renamed, so they appear all or none.
// A process killed mid-write cannot delete its temporary file; the next write to the same target removes
// any that a process no longer running left behind, and an interrupt (Ctrl+C, SIGTERM) removes its own.
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace HitGpu.Nn;

/// <summary>
/// An output resolved before any work: the file it will replace (or create), or the stream it writes through,
/// and the temporary file its write goes to first.
/// </summary>
public sealed class OutputTarget
{
    /// <summary>The path as given.</summary>
    public string Given { get; }

    /// <summary>Where it is written: the real path of the file (every link resolved), or the device or FIFO.</summary>
    public string Path { get; }

    /// <summary>Written through as a stream (standard output, a FIFO, a character device), not replaced.</summary>
    public bool IsStream { get; }

    internal FileSystem.Status? Existing { get; }
    internal int StandardHandle { get; } = -1; // 1 or 2 for /dev/stdout, /dev/stderr and their /proc and /dev/fd names

    /// <summary>Whether an output path names standard output ("-", /dev/stdout, /dev/fd/1, /proc/self/fd/1): what a command prints to when it has no
    /// --out.</summary>
    public static bool NamesStandardOutput(string? path) => path is not null && StandardHandleOf(FullPath(path)) == 1;

    /// <summary>The full path, "-" standing for /dev/stdout.</summary>
    private static string FullPath(string path) => path == SongData.StandardStream ? "/dev/stdout" : System.IO.Path.GetFullPath(path);

    private OutputTarget(string given, string path, bool isStream, FileSystem.Status? existing, int standardHandle)
    {
        Given = given;
        Path = path;
        IsStream = isStream;
        Existing = existing;
        StandardHandle = standardHandle;
    }

    /// <summary>Resolves an output path; throws an <see cref="InputException"/> for one that cannot be written as promised.</summary>
    public static OutputTarget Resolve(string path)
    {
        string full = FullPath(path);
        int standard = StandardHandleOf(full);
        if (standard > 0)
            return new OutputTarget(path, full, true, null, standard);
        var existing = FileSystem.Stat(full);
        if (existing is { } status)
        {
            switch (status.Kind)
            {
                case FileSystem.Kind.Directory:
                    throw new InputException($"{path}: is a folder; the output needs a file name");
                case FileSystem.Kind.CharacterDevice or FileSystem.Kind.Fifo:
                    return new OutputTarget(path, full, true, status, -1);
                case FileSystem.Kind.Regular when status.Links > 1:
                    throw new InputException($"{path}: the file has {status.Links} names (hard links); replacing it would split them: remove the " +
                        $"other names or write elsewhere");
                case FileSystem.Kind.Regular:
                    return new OutputTarget(path, FileSystem.Real(full), false, status, -1);
                default:
                    throw new InputException($"{path}: is a {Describe(status.Kind)}, not a file HitGpu can write");
            }
        }
        if (new FileInfo(full).LinkTarget is { } target)
            throw new InputException($"{path}: is a link to {target}, which does not exist");
        string? folder = System.IO.Path.GetDirectoryName(full);
        if (folder is not null && !Directory.Exists(folder))
            throw new InputException($"{path}: cannot write: folder {folder} does not exist");
        return new OutputTarget(path, System.IO.Path.Combine(FileSystem.Real(folder ?? "/"), System.IO.Path.GetFileName(full)), false, null, -1);
    }

    private static string Describe(FileSystem.Kind kind) => kind switch
    {
        FileSystem.Kind.BlockDevice => "block device",
        FileSystem.Kind.Socket => "socket",
        _ => "special file",
    };

    /// <summary>Standard output or error named as a file ("-", /dev/stdout, /dev/fd/1, /proc/self/fd/1): 1 or 2, else 0.</summary>
    internal static int StandardHandleOf(string full) => full switch
    {
        "/dev/stdout" or "/dev/fd/1" or "/proc/self/fd/1" => 1,
        "/dev/stderr" or "/dev/fd/2" or "/proc/self/fd/2" => 2,
        _ => 0,
    };

    /// <summary>
    /// Proves, before any work, that the write will be allowed: creates and removes the very temporary file it
    /// will use (a read-only folder, a missing permission or a name too long fails here, not after training).
    /// </summary>
    public void Probe()
    {
        if (IsStream)
            return;
        int nameBytes = Encoding.UTF8.GetByteCount(System.IO.Path.GetFileName(Path));
        if (nameBytes > 255)
            throw new InputException($"{Given}: the file name is {nameBytes} bytes long; file systems take 255 at most");
        string temporary = AtomicFile.TemporaryFor(Path);
        try
        {
            using (new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None)) { }
            File.Delete(temporary);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            AtomicFile.TryDelete(temporary);
            throw new InputException($"{Given}: cannot write here ({AtomicFile.Why(e)})");
        }
    }
}

/// <summary>
/// Several outputs of one command, all or none: each write goes to its temporary file as it is made
/// (<see cref="AtomicFile.Write"/> inside <see cref="Begin"/>'s scope), and <see cref="Commit"/> renames them
/// all; disposed without a commit, it removes every temporary file.
/// </summary>
public sealed class OutputSet : IDisposable
{
    private static readonly AsyncLocal<OutputSet?> current = new();
    private readonly OutputSet? outer;
    private readonly List<(OutputTarget Target, string Temporary, byte[]? StreamBytes)> staged = [];
    private bool done;

    private OutputSet()
    {
        outer = current.Value;
        current.Value = this;
    }

    /// <summary>Starts collecting the writes of this thread (and its awaits) until <see cref="Commit"/>.</summary>
    public static OutputSet Begin() => new();

    internal static OutputSet? Current => current.Value;

    internal void Stage(OutputTarget target, string temporary, byte[]? streamBytes) => staged.Add((target, temporary, streamBytes));

    /// <summary>Renames every staged file over its target and writes the streams; the outputs written so far are named if one fails.</summary>
    public IReadOnlyList<string> Commit()
    {
        done = true;
        current.Value = outer;
        var written = new List<string>();
        foreach (var (target, temporary, bytes) in staged)
        {
            try
            {
                if (bytes is not null)
                    AtomicFile.WriteThrough(target, stream => stream.Write(bytes));
                else
                    AtomicFile.Replace(target, temporary);
                written.Add(target.Given);
            }
            catch (InputException e)
            {
                foreach (var (_, left, _) in staged)
                    AtomicFile.TryDelete(left);
                throw new InputException(written.Count == 0 ? $"{e.Message}; nothing was written"
                    : $"{e.Message}; written before it: {string.Join(", ", written)}");
            }
        }
        return written;
    }

    public void Dispose()
    {
        if (done)
            return;
        current.Value = outer;
        foreach (var (_, temporary, _) in staged)
            AtomicFile.TryDelete(temporary);
    }
}

public static class AtomicFile
{
    private static readonly ConcurrentDictionary<string, byte> inFlight = new();

    /// <summary>
    /// Writes one output whole or not at all (see the file's head). Inside an <see cref="OutputSet"/> the file
    /// is only staged: it appears when the set commits.
    /// </summary>
    public static void Write(string path, Action<Stream> write)
    {
        var target = OutputTarget.Resolve(path);
        var set = OutputSet.Current;
        if (target.IsStream)
        {
            if (set is null)
            {
                WriteThrough(target, write);
                return;
            }
            using var buffer = new MemoryStream(); // a stream cannot be taken back: it is written when the set commits
            write(buffer);
            set.Stage(target, "", buffer.ToArray());
            return;
        }
        string temporary = Stage(target, write);
        if (set is not null)
        {
            set.Stage(target, temporary, null);
            return;
        }
        Replace(target, temporary);
    }

    public static void WriteText(string path, string text) =>
        Write(path, stream => stream.Write(new UTF8Encoding(false).GetBytes(text)));

    /// <summary>The write into a new temporary file beside the target, flushed to disk, with the replaced file's mode and owner.</summary>
    private static string Stage(OutputTarget target, Action<Stream> write)
    {
        string folder = Path.GetDirectoryName(target.Path) ?? ".";
        RemoveStale(folder, Path.GetFileName(target.Path));
        string temporary = TemporaryFor(target.Path);
        inFlight.TryAdd(temporary, 0);
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            if (target.Existing is { } old && FileSystem.Native && OperatingSystem.IsLinux())
            {
                File.SetUnixFileMode(temporary, (UnixFileMode)old.Mode);
                FileSystem.SetOwner(temporary, old.Owner, old.Group);
            }
            return temporary;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(temporary);
            throw new InputException($"{target.Given}: cannot write ({Why(e)})");
        }
        catch
        {
            TryDelete(temporary);
            throw;
        }
    }

    internal static void Replace(OutputTarget target, string temporary)
    {
        try
        {
            File.Move(temporary, target.Path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(temporary);
            throw new InputException($"{target.Given}: cannot write ({Why(e)})");
        }
        finally
        {
            inFlight.TryRemove(temporary, out _);
        }
    }

    /// <summary>Writes straight into a stream output (standard output, a FIFO, a device).</summary>
    internal static void WriteThrough(OutputTarget target, Action<Stream> write)
    {
        try
        {
            using var stream = target.StandardHandle > 0
                ? new FileStream(new SafeFileHandle(target.StandardHandle, ownsHandle: false), FileAccess.Write, 1)
                : new FileStream(target.Path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1);
            write(stream);
            stream.Flush();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InputException($"{target.Given}: cannot write ({Why(e)})");
        }
    }

    /// <summary>Why a write failed, in the system's words but without the temporary file's name: "permission denied", "No space left on device".</summary>
    public static string Why(Exception e) => e switch
    {
        UnauthorizedAccessException => "permission denied",
        PathTooLongException => "the name is too long for the file system",
        _ => System.Text.RegularExpressions.Regex.Replace(e.Message, @"\s*:?\s*'[^']*'\.?$", "").TrimEnd('.', ' '),
    };

    /// <summary>Deletes the temporary files of writes still in progress: for an interrupt handler, before the process ends.</summary>
    public static void AbandonWrites()
    {
        foreach (var temporary in inFlight.Keys)
            TryDelete(temporary);
    }

    /// <summary>
    /// The temporary file of a write to <paramref name="path"/> by this process: ".NAME.PID.GUID.tmp" beside it,
    /// the name shortened (by whole characters) so that the whole stays within 255 bytes, as file systems allow.
    /// </summary>
    internal static string TemporaryFor(string path) =>
        Path.Combine(Path.GetDirectoryName(path) ?? ".", $"{TemporaryPrefix(Path.GetFileName(path))}{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");

    /// <summary>".NAME." with NAME cut to leave room for the longest process id, the GUID and ".tmp" within 255 bytes.</summary>
    private static string TemporaryPrefix(string name)
    {
        const int room = 255 - 2 - 10 - 1 - 32 - 4;
        var shortened = new StringBuilder();
        int bytes = 0;
        foreach (var rune in name.EnumerateRunes())
        {
            if ((bytes += rune.Utf8SequenceLength) > room)
                break;
            shortened.Append(rune.ToString());
        }
        return $".{shortened}.";
    }

    /// <summary>The temporary file name of a write to <paramref name="name"/> by process <paramref name="processId"/>.</summary>
    public static bool IsTemporaryOf(string fileName, string name, out int processId)
    {
        processId = 0;
        string prefix = TemporaryPrefix(name);
        if (!fileName.StartsWith(prefix, StringComparison.Ordinal) || !fileName.EndsWith(".tmp", StringComparison.Ordinal))
            return false;
        var parts = fileName[prefix.Length..^".tmp".Length].Split('.');
        return parts.Length == 2 && parts[1].Length == 32 && int.TryParse(parts[0], out processId);
    }

    /// <summary>Temporary files of writes to this target by processes that no longer run (killed mid-write).</summary>
    private static void RemoveStale(string folder, string name)
    {
        try
        {
            foreach (var file in Directory.EnumerateFiles(folder, ".*.tmp"))
                if (IsTemporaryOf(Path.GetFileName(file), name, out int processId) && !IsRunning(processId))
                    TryDelete(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A folder that can be written but not listed: nothing stale can be found, and the write goes on.
        }
    }

    /// <summary>Whether the path is a regular file (through links): not a folder, device, FIFO or nothing.</summary>
    public static bool IsRegularFile(string path) => FileSystem.Stat(path) is { Kind: FileSystem.Kind.Regular };

    /// <summary>
    /// What a path names, as a key two names of the same file share: its device and inode (through links in any
    /// folder, and hard links); where the system does not say, its full path with every link resolved.
    /// </summary>
    public static string FileKey(string path) =>
        FileSystem.Stat(path) is { Inode: not 0 } status ? $"{status.Device}:{status.Inode}" : FileSystem.Real(path);

    private static bool IsRunning(int processId)
    {
        if (processId == Environment.ProcessId)
            return true;
        try
        {
            using var process = Process.GetProcessById(processId);
            return !process.HasExited;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            return false;
        }
    }

    internal static void TryDelete(string path)
    {
        if (path.Length == 0)
            return;
        inFlight.TryRemove(path, out _);
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
