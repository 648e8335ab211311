"""The catalogue of every paper lwnn covers: one entry per paper id, and what exists for it.

    python -m scripts.lwnn papers                        # every paper: family, tier, year, title, what exists
    python -m scripts.lwnn papers --family quantization  # one family
    python -m scripts.lwnn run han2015_prune --smoke     # a paper's script, without knowing its family

The 94 ids, their families and tiers are those of ``../shared/PAPERS.md`` and the family issues. Each paper
lives in one family folder: ``methods/<family>/<id>.py``, ``scripts/<family>/<id>.py`` (run as
``python -m scripts.<family>.<id>``), ``papers/<family>/<id>.md`` and ``tests/methods/<family>/test_<id>.py``.
``papers/README.md`` is generated from this catalogue and the notes (``python -m scripts.papers_table``).
"""
from __future__ import annotations

import difflib
import importlib
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("pruning", "quantization", "sharing", "lowrank", "distillation", "architectures", "nas")


@dataclass(frozen=True)
class Paper:
    """One catalogue entry. ``tier`` 1 = core, 2 = important, 3 = complete coverage (PAPERS.md section 3)."""

    id: str
    family: str
    tier: int
    year: int
    title: str
    venue: str

    def path(self, kind: str) -> Path:
        """The file of ``kind`` ('method', 'script', 'note' or 'test') for this paper, existing or not."""
        return ROOT / {"method": f"methods/{self.family}/{self.id}.py",
                       "script": f"scripts/{self.family}/{self.id}.py",
                       "note": f"papers/{self.family}/{self.id}.md",
                       "test": f"tests/methods/{self.family}/test_{self.id}.py"}[kind]

    @property
    def script_module(self) -> str:
        return f"scripts.{self.family}.{self.id}"


PAPERS: tuple[Paper, ...] = (
    # pruning
    Paper('setiono1997_nnfs', 'pruning', 3, 1997, 'Neural-Network Feature Selector',
          'IEEE Trans. Neural Networks 8(3), 1997'),
    Paper('lecun1989_obd', 'pruning', 1, 1989, 'Optimal Brain Damage',
          'NIPS 2 (1989/90)'),
    Paper('hassibi1993_obs', 'pruning', 1, 1993, 'Second order derivatives for network pruning: Optimal Brain Surgeon',
          'NIPS 5 (1992/93); "Optimal Brain Surgeon and general network pruning", ICNN 1993'),
    Paper('han2015_prune', 'pruning', 1, 2015, 'Learning both Weights and Connections for Efficient Neural Networks',
          'NIPS 2015'),
    Paper('srinivas2017_gates', 'pruning', 3, 2017, 'Training Sparse Neural Networks',
          'CVPR Workshops 2017'),
    Paper('anwar2017_structprune', 'pruning', 3, 2017, 'Structured Pruning of Deep Convolutional Neural Networks',
          'ACM JETC 13(3), 2017'),
    Paper('wen2016_ssl', 'pruning', 1, 2016, 'Learning Structured Sparsity in Deep Neural Networks (SSL)',
          'NIPS 2016'),
    Paper('lin2019_ssr', 'pruning', 3, 2019, 'Toward Compact ConvNets via Structure-Sparsity Regularized Filter Pruning (SSR)',
          'IEEE TNNLS 2019/2020'),
    Paper('guo2016_dns', 'pruning', 1, 2016, 'Dynamic Network Surgery for Efficient DNNs',
          'NIPS 2016'),
    Paper('jia2018_droppruning', 'pruning', 3, 2018, 'DropPruning for Model Compression',
          'arXiv 1812.02035, 2018'),
    Paper('li2017_l1filter', 'pruning', 1, 2017, 'Pruning Filters for Efficient ConvNets',
          'ICLR 2017 (arXiv 1608.08710)'),
    Paper('hu2016_apoz', 'pruning', 2, 2016, 'Network Trimming: A Data-Driven Neuron Pruning Approach…',
          'arXiv 1607.03250, 2016'),
    Paper('tian2017_ldaprune', 'pruning', 3, 2017, 'Deep LDA-Pruned Nets for Efficient Facial Gender Classification',
          'CVPR Workshops 2017'),
    Paper('luo2017_thinet', 'pruning', 1, 2017, 'ThiNet: A Filter Level Pruning Method…',
          'ICCV 2017'),
    Paper('he2018_sfp', 'pruning', 2, 2018, 'Soft Filter Pruning…',
          'IJCAI 2018 (arXiv 1808.06866)'),
    Paper('he2017_channelprune', 'pruning', 1, 2017, 'Channel Pruning for Accelerating Very Deep Neural Networks',
          'ICCV 2017 (arXiv 1707.06168)'),
    Paper('hu2019_mlcp', 'pruning', 3, 2019, 'Multi-loss-aware Channel Pruning of Deep Networks',
          'arXiv 1902.10364, 2019'),
    Paper('zhuang2018_dcp', 'pruning', 2, 2018, 'Discrimination-aware Channel Pruning',
          'NeurIPS 2018 (arXiv 1810.11809)'),
    Paper('he2018_amc', 'pruning', 2, 2018, 'AMC: AutoML for Model Compression…',
          'ECCV 2018 (the arXiv 1802.03494 v1 cited by 003 was titled "ADC: Automated Deep Compression…")'),
    Paper('liu2017_slimming', 'pruning', 1, 2017, 'Learning Efficient Convolutional Networks through Network Slimming',
          'ICCV 2017'),
    Paper('frankle2019_lottery', 'pruning', 2, 2019, 'The Lottery Ticket Hypothesis',
          'ICLR 2019'),
    # quantization
    Paper('gupta2015_fxp16', 'quantization', 1, 2015, 'Deep Learning with Limited Numerical Precision',
          'ICML 2015 (arXiv 1502.02551)'),
    Paper('jacob2018_int8qat', 'quantization', 1, 2018, 'Quantization and Training of NNs for Efficient Integer-Arithmetic-Only Inference',
          'CVPR 2018'),
    Paper('courbariaux2015_binaryconnect', 'quantization', 1, 2015, 'BinaryConnect: Training DNNs with binary weights during propagations',
          'NIPS 2015'),
    Paper('courbariaux2016_bnn', 'quantization', 1, 2016, 'Binarized Neural Networks…',
          'arXiv 1602.02830, 2016 (NIPS 2016 as Hubara et al.)'),
    Paper('rastegari2016_xnor', 'quantization', 1, 2016, 'XNOR-Net: ImageNet Classification Using Binary CNNs',
          'ECCV 2016 (arXiv 1603.05279)'),
    Paper('li2017_horq', 'quantization', 2, 2017, 'Performance Guaranteed Network Acceleration via High-Order Residual Quantization (HORQ)',
          'ICCV 2017'),
    Paper('hwang2014_ternary', 'quantization', 2, 2014, 'Fixed-point feedforward deep neural network design using weights +1, 0, and −1',
          'IEEE SiPS 2014'),
    Paper('hou2017_lab', 'quantization', 2, 2017, 'Loss-aware Binarization of Deep Networks (LAB)',
          'ICLR 2017 (arXiv 1611.01600)'),
    Paper('gudovskiy2017_shiftcnn', 'quantization', 2, 2017, 'ShiftCNN: Generalized Low-Precision Architecture for Inference of CNNs',
          'arXiv 1706.02393, 2017'),
    Paper('meller2019_equalize', 'quantization', 2, 2019, 'Same, Same But Different: Recovering NN Quantization Error Through Weight Factorization',
          'ICML 2019 (arXiv 1902.01917)'),
    Paper('xu2018_dnq', 'quantization', 3, 2018, 'DNQ: Dynamic Network Quantization',
          'arXiv 1812.02375, 2018'),
    Paper('li2016_twn', 'quantization', 2, 2016, 'Ternary Weight Networks',
          'arXiv 1605.04711, 2016'),
    Paper('zhu2017_ttq', 'quantization', 2, 2017, 'Trained Ternary Quantization',
          'ICLR 2017'),
    Paper('zhou2016_dorefa', 'quantization', 2, 2016, 'DoReFa-Net',
          'arXiv 1606.06160, 2016'),
    Paper('zhou2017_inq', 'quantization', 2, 2017, 'Incremental Network Quantization',
          'ICLR 2017'),
    # sharing
    Paper('han2016_deepcomp', 'sharing', 1, 2016, 'Deep Compression: … Pruning, Trained Quantization and Huffman Coding',
          'ICLR 2016 (arXiv 1510.00149)'),
    Paper('appuswamy2016_structconv', 'sharing', 3, 2016, 'Structured Convolution Matrices for Energy-efficient Deep Learning',
          'arXiv 1606.02407, 2016'),
    Paper('sindhwani2015_ldr', 'sharing', 3, 2015, 'Structured Transforms for Small-Footprint Deep Learning',
          'NIPS 2015'),
    Paper('cheng2015_circulant', 'sharing', 2, 2015, 'An Exploration of Parameter Redundancy in Deep Networks with Circulant Projections',
          'ICCV 2015 (arXiv 1502.03436)'),
    Paper('chen2015_hashednets', 'sharing', 1, 2015, 'Compressing Neural Networks with the Hashing Trick (HashedNets)',
          'ICML 2015'),
    Paper('shi2016_funhash', 'sharing', 3, 2016, 'Functional Hashing for Compressing Neural Networks (FunHashNN)',
          'arXiv 1605.06560, 2016'),
    Paper('wu2018_deepkmeans', 'sharing', 2, 2018, 'Deep k-Means: Re-Training and Parameter Sharing with Harder Cluster Assignments…',
          'ICML 2018 (arXiv 1806.09228)'),
    Paper('lu2016_compactrnn', 'sharing', 3, 2016, 'Learning Compact Recurrent Neural Networks',
          'ICASSP 2016 (arXiv 1604.02594)'),
    Paper('jin2018_wsnet', 'sharing', 3, 2018, 'WSNet: Compact and Efficient Networks through Weight Sampling',
          'ICML 2018 (arXiv 1711.10067)'),
    Paper('yang2019_fsnet', 'sharing', 3, 2019, 'FSNet: Compression of Deep CNNs by Filter Summary',
          'arXiv 1902.03264 (v1 2019; later ICLR 2020)'),
    # lowrank
    Paper('golub1971_svd', 'lowrank', 1, 1971, 'Singular value decomposition and least squares solutions',
          'in *Linear Algebra* (Handbook), Springer 1971'),
    Paper('jaderberg2014_lowrank', 'lowrank', 1, 2014, 'Speeding up CNNs with Low Rank Expansions',
          'BMVC 2014 (arXiv 1405.3866)'),
    Paper('kim2016_tucker', 'lowrank', 1, 2016, 'Compression of Deep CNNs for Fast and Low Power Mobile Applications',
          'ICLR 2016 (arXiv 1511.06530)'),
    Paper('denil2013_predict', 'lowrank', 2, 2013, 'Predicting Parameters in Deep Learning',
          'NIPS 2013'),
    Paper('calvi2019_ttl', 'lowrank', 3, 2019, 'Tucker Tensor Layer in Fully Connected Neural Networks (TTL)',
          'arXiv 1903.06133, 2019'),
    Paper('denton2014_svd', 'lowrank', 1, 2014, 'Exploiting Linear Structure Within Convolutional Networks for Efficient Evaluation',
          'NIPS 2014'),
    Paper('lebedev2015_cp', 'lowrank', 2, 2015, 'Speeding-up CNNs Using Fine-tuned CP-Decomposition',
          'ICLR 2015'),
    Paper('novikov2015_tt', 'lowrank', 2, 2015, 'Tensorizing Neural Networks (TensorNet)',
          'NIPS 2015'),
    # distillation
    Paper('bucila2006_compress', 'distillation', 2, 2006, 'Model Compression',
          'KDD 2006'),
    Paper('ba2014_mimic', 'distillation', 2, 2014, 'Do Deep Nets Really Need to be Deep?',
          'NIPS 2014'),
    Paper('hinton2015_kd', 'distillation', 1, 2015, 'Distilling the Knowledge in a Neural Network',
          'NIPS DL Workshop 2014 / arXiv 1503.02531 (2015)'),
    Paper('romero2015_fitnets', 'distillation', 1, 2015, 'FitNets: Hints for Thin Deep Nets',
          'ICLR 2015 (arXiv 1412.6550)'),
    Paper('chen2016_net2net', 'distillation', 2, 2016, 'Net2Net: Accelerating Learning via Knowledge Transfer',
          'ICLR 2016 (arXiv 1511.05641)'),
    Paper('li2016_lwf', 'distillation', 3, 2016, 'Learning without Forgetting',
          'ECCV 2016 / TPAMI 40(12) 2018'),
    Paper('zagoruyko2017_at', 'distillation', 1, 2017, 'Paying More Attention to Attention: … Attention Transfer',
          'ICLR 2017 (arXiv 1612.03928)'),
    Paper('mirzadeh2020_takd', 'distillation', 2, 2020, 'Improved Knowledge Distillation via Teacher Assistant (TAKD)',
          'arXiv 1902.03393 (AAAI 2020)'),
    Paper('liu2018_kdtree', 'distillation', 3, 2018, 'Improving the Interpretability of DNNs with Knowledge Distillation',
          'arXiv 1812.10924 (ICDM Workshops 2018)'),
    Paper('yang2019_snapshot', 'distillation', 2, 2019, 'Snapshot Distillation: Teacher-Student Optimization in One Generation',
          'CVPR 2019 (arXiv 1812.00123)'),
    Paper('wang2019_rona', 'distillation', 3, 2019, 'Private Model Compression via Knowledge Distillation (RONA)',
          'AAAI 2019 (arXiv 1811.05072)'),
    Paper('lee2018_svdkd', 'distillation', 3, 2018, 'Self-supervised Knowledge Distillation Using Singular Value Decomposition',
          'ECCV 2018 (arXiv 1807.06819)'),
    Paper('lan2018_one', 'distillation', 2, 2018, 'Knowledge Distillation by On-the-Fly Native Ensemble (ONE)',
          'NeurIPS 2018 (arXiv 1806.04606)'),
    Paper('liu2018_kdstructpred', 'distillation', 3, 2018, 'Distilling Knowledge for Search-based Structured Prediction',
          'ACL 2018 (arXiv 1805.11224)'),
    Paper('li2017_mimicdet', 'distillation', 3, 2017, 'Mimicking Very Efficient Network for Object Detection',
          'CVPR 2017'),
    Paper('chen2017_kddet', 'distillation', 3, 2017, 'Learning Efficient Object Detection Models with Knowledge Distillation',
          'NIPS 2017'),
    Paper('wang2019_fgfi', 'distillation', 3, 2019, 'Distilling Object Detectors with Fine-grained Feature Imitation',
          'CVPR 2019'),
    Paper('liu2019_skdseg', 'distillation', 3, 2019, 'Structured Knowledge Distillation for Semantic Segmentation',
          'CVPR 2019'),
    Paper('he2019_kaseg', 'distillation', 3, 2019, 'Knowledge Adaptation for Efficient Semantic Segmentation',
          'CVPR 2019'),
    # architectures
    Paper('iandola2016_squeezenet', 'architectures', 1, 2016, 'SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size',
          'arXiv 1602.07360, 2016'),
    Paper('howard2017_mobilenet', 'architectures', 1, 2017, 'MobileNets: Efficient CNNs for Mobile Vision Applications',
          'arXiv 1704.04861, 2017'),
    Paper('sandler2018_mobilenetv2', 'architectures', 1, 2018, 'MobileNetV2: Inverted Residuals and Linear Bottlenecks',
          'CVPR 2018'),
    Paper('howard2019_mobilenetv3', 'architectures', 2, 2019, 'Searching for MobileNetV3',
          'ICCV 2019 (arXiv 1905.02244)'),
    Paper('hu2018_senet', 'architectures', 2, 2018, 'Squeeze-and-Excitation Networks',
          'CVPR 2018'),
    Paper('zhang2018_shufflenet', 'architectures', 1, 2018, 'ShuffleNet: An Extremely Efficient CNN for Mobile Devices',
          'CVPR 2018'),
    Paper('ma2018_shufflenetv2', 'architectures', 2, 2018, 'ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design',
          'ECCV 2018'),
    Paper('chollet2017_xception', 'architectures', 2, 2017, 'Xception: Deep Learning with Depthwise Separable Convolutions',
          'CVPR 2017'),
    Paper('xie2017_resnext', 'architectures', 2, 2017, 'Aggregated Residual Transformations for Deep Neural Networks (ResNeXt)',
          'CVPR 2017'),
    Paper('gao2018_channelnets', 'architectures', 3, 2018, 'ChannelNets: Compact and Efficient CNNs via Channel-Wise Convolutions',
          'NeurIPS 2018 (the seed lists "Salt Lake City"; NeurIPS 2018 was in Montréal)'),
    Paper('szegedy2017_inceptionv4', 'architectures', 3, 2017, 'Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning',
          'AAAI 2017 (arXiv 1602.07261)'),
    Paper('huang2018_msdnet', 'architectures', 2, 2018, 'Multi-Scale Dense Networks for Resource Efficient Image Classification (MSDNet)',
          'ICLR 2018 (arXiv 1703.09844)'),
    Paper('shelhamer2016_clockwork', 'architectures', 3, 2016, 'Clockwork Convnets for Video Semantic Segmentation',
          'ECCV Workshops 2016 (arXiv 1608.03609)'),
    Paper('han2020_ghostnet', 'architectures', 2, 2020, 'GhostNet: More Features from Cheap Operations',
          'CVPR 2020'),
    # nas
    Paper('tan2019_mnasnet', 'nas', 2, 2019, 'MnasNet: Platform-Aware Neural Architecture Search for Mobile',
          'CVPR 2019'),
    Paper('tan2019_efficientnet', 'nas', 2, 2019, 'EfficientNet: Rethinking Model Scaling for CNNs',
          'ICML 2019 (arXiv 1905.11946)'),
    Paper('liu2019_autodeeplab', 'nas', 3, 2019, 'Auto-DeepLab: Hierarchical NAS for Semantic Image Segmentation',
          'CVPR 2019'),
    Paper('zoph2017_nas', 'nas', 2, 2017, 'Neural Architecture Search with Reinforcement Learning',
          'ICLR 2017'),
    Paper('zoph2018_nasnet', 'nas', 3, 2018, 'Learning Transferable Architectures for Scalable Image Recognition (NASNet)',
          'CVPR 2018'),
    Paper('pham2018_enas', 'nas', 3, 2018, 'Efficient Neural Architecture Search via Parameter Sharing (ENAS)',
          'ICML 2018'),
    Paper('liu2019_darts', 'nas', 2, 2019, 'DARTS: Differentiable Architecture Search',
          'ICLR 2019'),
)

BY_ID: dict[str, Paper] = {p.id: p for p in PAPERS}
assert len(BY_ID) == len(PAPERS), "duplicate paper id in the catalogue"
assert all(p.family in FAMILIES for p in PAPERS)

REPRODUCTION = re.compile(r"^\|\s*reproduction\s*\|")
DEMO_SECTION = re.compile(r"^#+\s*In the demo", re.MULTILINE)


def get(paper_id: str) -> Paper:
    """The entry of ``paper_id``; an unknown id raises a KeyError naming the nearest known ids."""
    try:
        return BY_ID[paper_id]
    except KeyError:
        near = nearest(paper_id)
        hint = f"; did you mean {', '.join(near)}?" if near else "; `lwnn papers` lists them"
        raise KeyError(f"unknown paper id {paper_id!r}{hint}") from None


def nearest(paper_id: str, n: int = 3) -> list[str]:
    """Up to ``n`` known ids closest to ``paper_id`` (by the author-year prefix as well as the whole id)."""
    ids = list(BY_ID)
    close = difflib.get_close_matches(paper_id, ids, n=n, cutoff=0.5)
    prefix = paper_id.split("_")[0]
    close += [i for i in ids if i.split("_")[0] == prefix and i not in close]
    return close[:n]


def family(name: str) -> list[Paper]:
    if name not in FAMILIES:
        raise KeyError(f"unknown family {name!r}; families: {', '.join(FAMILIES)}")
    return [p for p in PAPERS if p.family == name]


def reproduction_rows(paper: Paper) -> list[list[str]]:
    """The ``| reproduction | paper's figure | ours | compression | speed-up | command |`` rows of the note."""
    note = paper.path("note")
    if not note.is_file():
        return []
    out = []
    for line in note.read_text().splitlines():
        if REPRODUCTION.match(line.strip()):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 6:
                out.append(cells[1:])
    return out


def has_demo(paper: Paper) -> bool:
    """The paper's script defines ``demo(model, data, rng)`` and its note reports the row ("In the demo")."""
    script, note = paper.path("script"), paper.path("note")
    return (script.is_file() and "\ndef demo(" in script.read_text()
            and note.is_file() and DEMO_SECTION.search(note.read_text()) is not None)


def status(paper: Paper) -> dict[str, bool]:
    """What exists for ``paper``: method module, script, note, test, demo row, reproduction row."""
    return {"method": paper.path("method").is_file(), "script": paper.path("script").is_file(),
            "note": paper.path("note").is_file(), "test": paper.path("test").is_file(),
            "demo": has_demo(paper), "reproduction": bool(reproduction_rows(paper))}


def implemented(family_name: str | None = None) -> list[Paper]:
    """Papers with a method module and a script, in catalogue order (optionally of one family)."""
    return [p for p in PAPERS if (family_name is None or p.family == family_name)
            and p.path("method").is_file() and p.path("script").is_file()]


def script_main(paper_id: str):
    """The click command ``main`` of the paper's script (``lwnn run``)."""
    paper = get(paper_id)
    if not paper.path("script").is_file():
        raise FileNotFoundError(f"{paper_id} ({paper.family}) has no script yet: "
                                f"{paper.path('script').relative_to(ROOT)} does not exist")
    return importlib.import_module(paper.script_module).main


def table(papers: list[Paper]) -> str:
    """Aligned plain-text listing for ``lwnn papers``."""
    marks = ("method", "script", "note", "test", "demo", "reproduction")
    head = ["id", "family", "tier", "year", "title"] + list(marks)
    body = []
    for p in papers:
        s = status(p)
        title = p.title if len(p.title) <= 60 else p.title[:57] + "..."
        body.append([p.id, p.family, str(p.tier), str(p.year), title] + ["yes" if s[m] else "-" for m in marks])
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head] + body]
    done = sum(1 for p in papers if status(p)["method"])
    lines.append(f"{len(papers)} papers, {done} implemented")
    return "\n".join(lines)
