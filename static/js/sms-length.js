// SMS length as Messente bills a text sent as typed (autoconvert off), for the reply box's counter.
// app/replies/sms_length.py counts the same way, and both are checked against
// tests/vectors/sms-length.json (the browser's through window.smsLength).
var GSM_BASIC = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡" +
  "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
var GSM_EXTENSION = "^{}\\[]~|€\f";

function smsLength(text) {
  var gsm = [], ucs = [];  // each character's size in either encoding
  for (var character of text) {
    gsm.push(GSM_BASIC.indexOf(character) >= 0 ? 1 : GSM_EXTENSION.indexOf(character) >= 0 ? 2 : 0);
    ucs.push(character.length);  // UTF-16 units: 2 for a character outside the BMP (most emoji)
  }
  // One character outside GSM-7 makes the whole message UCS-2.
  if (gsm.indexOf(0) >= 0) {
    return { encoding: "UCS-2", units: text.length, parts: parts(ucs, 70, 67) };
  }
  return { encoding: "GSM-7", units: sum(gsm), parts: parts(gsm, 160, 153) };
}

function sum(sizes) {
  return sizes.reduce(function (total, size) { return total + size; }, 0);
}

// A part never ends inside a character (an escape and its extension character, or the two
// halves of a surrogate pair): one that doesn't fit starts the next part.
function parts(sizes, single, perPart) {
  var units = sum(sizes);
  if (units === 0) return 0;
  if (units <= single) return 1;
  var count = 1, used = 0;
  sizes.forEach(function (size) {
    if (used + size > perPart) {
      count += 1;
      used = 0;
    }
    used += size;
  });
  return count;
}

// SMS parts only when the reply may go by SMS (the chosen route is SMS or falls back to it,
// `data-sms`): WhatsApp and Viber carry a text whole.
function describeLength(text, bySms) {
  var characters = Array.from(text).length;
  var described = characters + (characters === 1 ? " character" : " characters");
  if (!bySms) return described;
  var length = smsLength(text);
  return described + " · " + length.parts + (length.parts === 1 ? " SMS" : " SMS parts") + " (" + length.encoding + ")";
}

window.smsLength = smsLength;
window.smsInbox.smsLength = { smsLength: smsLength, describeLength: describeLength };
