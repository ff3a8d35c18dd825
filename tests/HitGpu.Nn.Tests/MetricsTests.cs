// Metrics against values worked out by hand on small examples.

namespace HitGpu.Nn.Tests;

public sealed class MetricsTests
{
    [Fact]
    public void Small_example_worked_by_hand()
    {
        // p:      0.9  0.8  0.7  0.6  0.4  0.3  0.2  0.1
        // label:  1    1    0    1    0    1    0    0
        // at 0.5: TP = 3 (0.9, 0.8, 0.6), FP = 1 (0.7), FN = 1 (0.3), TN = 3.
        // precision 3/4, recall 3/4, F1 0.75, accuracy 6/8.
        // AUC: pairs (hit, not) with the hit scored higher: 0.9 and 0.8 beat all 4 (8), 0.6 beats 3 (0.4, 0.2, 0.1),
        // 0.3 beats 2 (0.2, 0.1): 13 of 16 = 0.8125.
        float[] p = [0.9f, 0.8f, 0.7f, 0.6f, 0.4f, 0.3f, 0.2f, 0.1f];
        float[] y = [1, 1, 0, 1, 0, 1, 0, 0];
        var e = Evaluation.Of(p, y);
        Assert.Equal(new ConfusionMatrix(3, 1, 3, 1), e.Confusion);
        Assert.Equal(0.75, e.Accuracy, 12);
        Assert.Equal(0.75, e.Precision, 12);
        Assert.Equal(0.75, e.Recall, 12);
        Assert.Equal(0.75, e.F1, 12);
        Assert.Equal(0.8125, e.RocAuc, 12);
        double logLoss = -(Math.Log(0.9) + Math.Log(0.8) + Math.Log(0.3) + Math.Log(0.6) + Math.Log(0.6) + Math.Log(0.3) + Math.Log(0.8) + Math.Log(0.9)) / 8;
        Assert.Equal(logLoss, e.LogLoss, 6);
        Assert.Equal(new RocPoint(0, 0), e.Roc[0]);
        Assert.Equal(new RocPoint(1, 1), e.Roc[^1]);
    }

    [Fact]
    public void Tied_scores_count_half_in_the_area()
    {
        // One hit and one non-hit with the same score: AUC 0.5, and the curve jumps straight to (1, 1).
        var (points, auc) = Evaluation.RocCurve([0.5f, 0.5f], [1, 0]);
        Assert.Equal(0.5, auc, 12);
        Assert.Equal([new RocPoint(0, 0), new RocPoint(1, 1)], points);
    }
}
