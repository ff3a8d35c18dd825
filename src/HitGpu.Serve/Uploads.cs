// Reading request bodies within their own budget, before a request may take a scoring slot: a slow client
// holds an upload slot (--max-uploads), never one of the slots real requests are scored in. A body that comes
// within a second of its handler's start (small ones come with their headers or just after) is taken without a
// slot; one that takes longer takes a slot while it arrives, and is refused 503 when all are taken. Each
// body must come within --body-timeout-s (408), and Kestrel holds it to --min-body-rate after a grace.
using System.Buffers;
using System.Diagnostics;
using Microsoft.AspNetCore.Http;

namespace HitGpu.Serve;

internal sealed class Uploads(ServeOptions options) : IDisposable
{
    private readonly SemaphoreSlim slots = new(options.MaxUploads);

    /// <summary>Bodies being waited for now, each holding an upload slot.</summary>
    public int InProgress => options.MaxUploads - slots.CurrentCount;

    /// <summary>
    /// How long a body may take after its headers before it needs an upload slot: clients that send the body
    /// in a write of its own (Python's http.client does) are here in microseconds, a trickle is not.
    /// </summary>
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(1);

    /// <summary>
    /// The whole body in one array of its length (nothing else is kept of it), refused past the size limit
    /// before more of it is read, and past the body deadline.
    /// </summary>
    public async Task<byte[]> Read(HttpContext context)
    {
        var request = context.Request;
        long max = options.MaxBodyBytes;
        if (request.ContentLength > max)
            throw TooLarge(context, request.ContentLength.Value);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        deadline.CancelAfter(options.BodyTimeout);
        var body = new BodyBuilder(request.ContentLength);
        var reader = request.BodyReader;
        bool holding = false;
        long start = Stopwatch.GetTimestamp();
        try
        {
            while (true)
            {
                if (!reader.TryRead(out var result))
                {
                    var patient = Patience - Stopwatch.GetElapsedTime(start);
                    if (!holding && patient > TimeSpan.Zero)
                    {
                        // Not here yet, but a body sent just after its headers comes within the patience: no slot.
                        using var patience = new CancellationTokenSource(patient);
                        using (patience.Token.Register(reader.CancelPendingRead))
                            result = await reader.ReadAsync(deadline.Token);
                    }
                    else
                    {
                        // The rest must be waited for: that takes an upload slot, held until the body is read.
                        if (!holding && !slots.Wait(0))
                        {
                            Unread(context);
                            throw new RequestRefusedException(StatusCodes.Unavailable,
                                $"busy: {options.MaxUploads} request bodies arriving, the most this server waits for at once " +
                                $"({ServeOptions.Named(nameof(ServeOptions.MaxUploads))}); send it again");
                        }
                        holding = true;
                        result = await reader.ReadAsync(deadline.Token);
                    }
                }
                // A read cut by the patience (or by its timer just after it ended) says IsCanceled: its bytes count all the same.
                if (body.Length + result.Buffer.Length > max)
                    throw TooLarge(context, body.Length + result.Buffer.Length);
                body.Add(result.Buffer);
                reader.AdvanceTo(result.Buffer.End);
                // All the announced bytes are here: Kestrel's reader may say it is completed only on a read after
                // them, and that read must not count as a wait for an upload slot.
                if (result.IsCompleted || body.Length == request.ContentLength)
                    return body.ToArray();
            }
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !context.RequestAborted.IsCancellationRequested)
        {
            Unread(context);
            throw new RequestRefusedException(StatusCodes.RequestTimeout,
                $"request body: {body.Length} bytes came within {options.BodyTimeout.TotalSeconds:0.###} s, not all of it " +
                $"({ServeOptions.Named(nameof(ServeOptions.BodyTimeout))})");
        }
        finally
        {
            body.Dispose();
            if (holding)
                slots.Release();
        }
    }

    /// <summary>
    /// A body refused before its end: the connection closes after the answer (its rest is not waited for), and
    /// Kestrel's own refusal of the unread rest, which follows, is not logged again (the answer was).
    /// </summary>
    private static void Unread(HttpContext context)
    {
        context.Response.Headers.Connection = "close";
        context.Items[HitEndpoints.BadRequestItem] = true;
    }

    private RequestRefusedException TooLarge(HttpContext context, long bytes)
    {
        Unread(context); // else Kestrel would read the rest, however long, to keep the connection
        return new(StatusCodes.TooLarge, $"request body: {bytes} bytes or more, over the {options.MaxBodyBytes} a request may send " +
            $"({ServeOptions.Named(nameof(ServeOptions.MaxBodyBytes))})");
    }

    public void Dispose() => slots.Dispose();

    /// <summary>
    /// A body's bytes as they come: straight into an array of the announced length, or (chunked, no length)
    /// in pooled 64 KiB pieces copied once into an array of the length found. An announced length reserves
    /// nothing past 64 KiB before its bytes arrive: the array grows to it as they do, fourfold each time.
    /// </summary>
    private sealed class BodyBuilder(long? announced) : IDisposable
    {
        private const int Piece = 1 << 16;
        private byte[] whole = announced is { } n && n <= Piece ? new byte[n] : [];
        private readonly List<byte[]> pieces = [];
        public long Length { get; private set; }

        public void Add(in ReadOnlySequence<byte> bytes)
        {
            if (announced is { } n)
            {
                if (whole.Length < Length + bytes.Length)
                    Array.Resize(ref whole, (int)Math.Min(n, Math.Max(Length + bytes.Length, 4L * whole.Length))); // 1.25 x at most
                bytes.CopyTo(whole.AsSpan((int)Length));
                Length += bytes.Length;
                return;
            }
            foreach (var segment in bytes)
                for (var left = segment.Span; !left.IsEmpty;)
                {
                    int at = (int)(Length % Piece);
                    if (at == 0)
                        pieces.Add(ArrayPool<byte>.Shared.Rent(Piece));
                    int take = Math.Min(left.Length, Piece - at);
                    left[..take].CopyTo(pieces[^1].AsSpan(at));
                    left = left[take..];
                    Length += take;
                }
        }

        public byte[] ToArray()
        {
            if (announced is not null)
                return whole.Length == Length ? whole : whole[..(int)Length];
            var array = GC.AllocateUninitializedArray<byte>((int)Length);
            for (int i = 0; i < pieces.Count; i++)
                pieces[i].AsSpan(0, (int)Math.Min(Piece, Length - (long)i * Piece)).CopyTo(array.AsSpan(i * Piece));
            return array;
        }

        public void Dispose()
        {
            foreach (var piece in pieces)
                ArrayPool<byte>.Shared.Return(piece);
            pieces.Clear();
        }
    }
}
