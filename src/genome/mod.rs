//! Genome samples and data objects: pure rules.
//!
//! GenomeGate holds references to sequence data, never the bytes. The legal
//! class of an object follows from what it is, not from what the caller says:
//! under Japan's APPI, sequence-level data is an individual identification
//! code (個人識別符号) whatever name is attached to it.

use serde::{Deserialize, Serialize};

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
            pub fn parse(raw: &str) -> Option<Self> {
                match raw { $($text => Some($name::$variant),)* _ => None }
            }
            /// The accepted values, for error messages.
            pub fn choices() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }
    };
}

text_enum!(
    /// Germline (inherited, e.g. from blood) or tumour tissue.
    SampleKind { Germline = "germline", Tumour = "tumour" }
);
text_enum!(
    Assay { Wgs = "wgs", Wes = "wes", CgpPanel = "cgp_panel", Rna = "rna" }
);
text_enum!(
    TumourCategory { Solid = "solid", Haematologic = "haematologic" }
);
text_enum!(
    DataFormat { Cram = "cram", Bam = "bam", Vcf = "vcf", Fastq = "fastq" }
);
text_enum!(
    /// 個人識別符号 or 要配慮個人情報.
    LegalClass { IdentificationCode = "identification_code", SensitivePersonal = "sensitive_personal" }
);

/// Reads (FASTQ), alignments (BAM, CRAM) and genome- or exome-wide variant
/// calls identify a person: identification codes. A variant file from a
/// targeted gene panel or RNA expression is a derived result: sensitive
/// personal information. When in doubt the stricter class wins.
pub fn legal_class(format: DataFormat, assay: Assay) -> LegalClass {
    match (format, assay) {
        (DataFormat::Vcf, Assay::CgpPanel | Assay::Rna) => LegalClass::SensitivePersonal,
        _ => LegalClass::IdentificationCode,
    }
}

/// A sentence in Japanese and English for a patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlainText {
    pub ja: &'static str,
    pub en: &'static str,
}

pub fn describe_kind(kind: SampleKind) -> PlainText {
    match kind {
        SampleKind::Germline => PlainText {
            ja: "生まれつき持っている遺伝情報（血液や唾液などから調べたもの）",
            en: "The genetic information you were born with (from blood or saliva)",
        },
        SampleKind::Tumour => PlainText {
            ja: "がんの組織から調べた遺伝子の情報",
            en: "Genetic information from your tumour tissue",
        },
    }
}

pub fn describe_assay(assay: Assay) -> PlainText {
    match assay {
        Assay::Wgs => PlainText {
            ja: "全ゲノム解析：DNA の全体を読み取る検査",
            en: "Whole-genome sequencing: all of your DNA was read",
        },
        Assay::Wes => PlainText {
            ja: "全エクソーム解析：たんぱく質を作る部分の DNA を読み取る検査",
            en: "Whole-exome sequencing: the parts of your DNA that make proteins were read",
        },
        Assay::CgpPanel => PlainText {
            ja: "がん遺伝子パネル検査：がんに関係する数百の遺伝子を調べる検査",
            en: "Cancer gene panel test: a few hundred cancer-related genes were examined",
        },
        Assay::Rna => PlainText {
            ja: "RNA 解析：どの遺伝子が働いているかを調べる検査",
            en: "RNA analysis: which of your genes are active was measured",
        },
    }
}

pub fn describe_legal_class(class: LegalClass) -> PlainText {
    match class {
        LegalClass::IdentificationCode => PlainText {
            ja: "このデータはあなたを特定できる情報（個人識別符号）です。データそのものはゲノム保管庫から外に出ず、研究者には審査を経た閲覧の権利だけが渡されます。",
            en: "This data can identify you (an individual identification code). The data itself never leaves the genome store; approved researchers only receive a right to access it there.",
        },
        LegalClass::SensitivePersonal => PlainText {
            ja: "このデータは検査結果から導かれた要配慮個人情報です。同意と審査の範囲でのみ利用されます。",
            en: "This data is a derived result and sensitive personal information. It is used only within your consent and after review.",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_level_data_is_always_an_identification_code() {
        for assay in Assay::ALL {
            for format in [DataFormat::Fastq, DataFormat::Bam, DataFormat::Cram] {
                assert_eq!(legal_class(format, *assay), LegalClass::IdentificationCode);
            }
        }
        assert_eq!(
            legal_class(DataFormat::Vcf, Assay::Wgs),
            LegalClass::IdentificationCode
        );
        assert_eq!(
            legal_class(DataFormat::Vcf, Assay::Wes),
            LegalClass::IdentificationCode
        );
        assert_eq!(
            legal_class(DataFormat::Vcf, Assay::CgpPanel),
            LegalClass::SensitivePersonal
        );
    }

    #[test]
    fn text_codes_round_trip() {
        for format in DataFormat::ALL {
            assert_eq!(DataFormat::parse(format.as_str()), Some(*format));
        }
        assert_eq!(Assay::parse("WGS"), None, "codes are exact");
        assert_eq!(SampleKind::choices(), "germline, tumour");
    }
}
