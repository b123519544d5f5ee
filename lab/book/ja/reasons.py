"""Japanese for the English reasons and labels that lab.host and lab.virt return.

The mechanism layers speak English (exceptions, reasons, table labels); the
book shows Japanese. Each function here maps one kind of machine text to the
reader's words. A text no rule knows is shown as it is, after a Japanese lead
that says it is the library's own message, so that nothing is hidden.
"""

from __future__ import annotations

import re
from typing import Any

# (pattern, Japanese template): the first match wins; groups fill the template.
KVM_REASONS: list[tuple[str, str]] = [
    (r"(\S+) does not exist",
     "{0} がありません。この機械(Binder のセッション、--device {0} を付けずに起動したコンテナ、"
     "入れ子仮想化のない仮想マシンなど)には KVM がないので、この本は記録済みのデータを示します"),
    (r"cannot open (\S+): Permission denied",
     "{0} を開く権限がありません(permission denied)。kvm グループに入る"
     "(sudo usermod -aG kvm $USER のあとログインし直す)か、root で実行してください"),
    (r"(\S+) exists but no KVM driver answers",
     "{0} はありますが、KVM のドライバが応答しません。kvm_intel か kvm_amd を"
     "読み込む(modprobe)か、ファームウェアで仮想化支援を有効にしてください"),
    (r"(\S+) is not a character device", "{0} がデバイスファイルではありません"),
    (r"KVM_CREATE_VM failed: (.*)", "KVM_CREATE_VM が失敗しました({0})"),
    (r"KVM_GET_API_VERSION failed: (.*)", "KVM_GET_API_VERSION が失敗しました({0})"),
    (r"KVM API version (\d+), this book speaks version (\d+)",
     "KVM の API バージョンが {0} で、この本が使う {1} と違います"),
]

CHOSEN_BY = {
    "argument": "引数で指定された URI",
    "first preferred URI that answered": "希望した URI のうち最初に応答したもの",
    "default: libvirt's in-process test driver, needs no daemon":
        "既定:libvirt に組み込みのテスト用ドライバ(デーモン不要)",
    "fallback: no preferred URI answered; default: libvirt's in-process test driver, needs no daemon":
        "代わり:希望した URI がどれも応答しなかったので、libvirt に組み込みのテスト用ドライバ(デーモン不要)",
}

ATTEMPTS: list[tuple[str, str]] = [
    (r"KVM is not usable here, so a type='kvm' domain cannot run: (.*)",
     "この機械では KVM が使えないので、type='kvm' のドメインは動かせません。理由:{kvm}"),
    (r".*(Failed to connect socket|No such file or directory|no libvirt daemon).*",
     "libvirtd が応答しません。デーモンを起動してください"
     "(sudo tools/libvirt-daemons.sh、systemd なら systemctl start libvirtd)"),
    (r".*(Permission denied|authentication|access denied).*",
     "libvirtd は動いていますが、この利用者には接続の権限がありません(permission denied)。"
     "libvirt グループに入るか、root で実行してください"),
]


def _match(rules: list[tuple[str, str]], text: str) -> str | None:
    for pattern, template in rules:
        m = re.match(pattern, text, re.S)
        if m:
            return template.format(*m.groups(), kvm=kvm_reason(m.group(1)) if "{kvm}" in template else "")
    return None


def kvm_reason(reason: str | None) -> str:
    """The probe's reason why /dev/kvm is not usable (``host.probe_kvm().reason``), in Japanese."""
    if not reason:
        return "使えます"
    return _match(KVM_REASONS, reason) or f"ライブラリの原文:{reason}"


def chosen_by(text: str) -> str:
    """How :func:`lab.virt.connect` chose its URI, in Japanese."""
    if text in CHOSEN_BY:
        return CHOSEN_BY[text]
    if text.startswith("environment variable "):
        return f"環境変数 {text.split()[-1]} で指定された URI"
    return f"ライブラリの原文:{text}"


def attempt(reason: str | None) -> str:
    """Why a URI that :func:`lab.virt.connect` tried did not answer, in Japanese."""
    if reason is None:
        return "応答あり"
    return _match(ATTEMPTS, reason) or f"ライブラリの原文:{reason}"


PVM_HYPERVISOR_ROW = ("はい = このカーネル自身が仮想マシンの中で動いている。ただし KVM は PVM(kvm_pvm)なので、"
                      "ここで作る VM はハードウェアの入れ子仮想化ではない")


def probe_row_meaning(meaning: str) -> str:
    """The third column of :func:`lab.book.host.report_rows`: Japanese already, or an English reason to translate."""
    english = re.search(r"[A-Za-z]{3,} [A-Za-z]{2,} [A-Za-z]{2,}", meaning or "")
    if not english or re.search(r"[\u3040-\u30ff]", meaning):
        return meaning
    m = re.fullmatch(r"module (\S+) has no 'nested' parameter", meaning)
    if m:
        return f"モジュール {m.group(1)} には nested パラメータがない(入れ子仮想化の設定を持たない)"
    return _match(ATTEMPTS, meaning) or kvm_reason(meaning)  # a libvirt URI's reason, else /dev/kvm's


def validation(check: Any) -> str:
    """:func:`lab.virt.validate_xml`'s answer in Japanese: the verdict, and for "not run" the reason."""
    if check.verdict == "valid":
        return "合格: スキーマどおり"
    if check.verdict == "invalid":
        return "不合格: スキーマに合わない(virt-xml-validate の出力は下のとおり)"
    m = re.search(r"needs (\S+), which is not installed \(Debian: apt-get install (\S+)\)", check.output)
    if m:
        why = f"{m.group(1)} がインストールされていないため(Debian では apt-get install {m.group(2)})"
    elif "virt-xml-validate is not installed" in check.output:
        why = "virt-xml-validate がインストールされていないため(Debian では apt-get install libvirt-clients)"
    else:
        why = f"検査のプログラムが動かなかったため(原文: {check.output})"
    return f"検査できなかった(合否は分からない): {why}"

