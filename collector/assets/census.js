// Census web UI: the only script besides htmx (the CSP forbids inline script).
// Copy buttons: <button class="copy" data-copy="ELEMENT_ID">.
document.addEventListener("click", function (event) {
  var button = event.target.closest("button.copy");
  if (!button) return;
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (!source) return;
  var text = source.value || source.textContent;
  if (navigator.clipboard) {
    navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; });
  } else {
    source.select();
  }
});
