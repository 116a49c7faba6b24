"""How DIRAC's ClassAd reads JDL texts. ARGS: {"jdls": [text, ...]}. RESULT: per text
{"names": [...], "expr", "string", "list", "int", "float", "bool": {name: value}, "asJDL": text}.
"""

from DIRAC.Core.Utilities.ClassAd.ClassAdLight import ClassAd

RESULT = []
for text in globals()["ARGS"]["jdls"]:
    ad = ClassAd(text)
    names = ad.getAttributes()
    RESULT.append({
        "ok": bool(ad.isOK()),
        "names": names,
        "expr": {n: ad.get_expression(n) for n in names},
        "string": {n: ad.getAttributeString(n) for n in names},
        "list": {n: ad.getListFromExpression(n) for n in names},
        "int": {n: ad.getAttributeInt(n) for n in names},
        "float": {n: ad.getAttributeFloat(n) for n in names},
        "bool": {n: ad.getAttributeBool(n) for n in names},
        "asJDL": ad.asJDL(),
    })
